package powershell

import (
	"fmt"
	"strings"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// The backend's assumptions about a real Front End server that no public source confirms, in one
// place: the backend acts on them and `lync-agent doctor` checks them on the server.

// deploymentDirs is each product's Deployment folder under Program Files, where Bootstrapper.exe is.
var deploymentDirs = map[string]string{
	protocol.ProductLync2013: `Microsoft Lync Server 2013\Deployment`,
	protocol.ProductSfB2015:  `Skype for Business Server 2015\Deployment`,
	protocol.ProductSfB2019:  `Skype for Business Server 2019\Deployment`,
}

// DefaultBootstrapperPath is where the product's Bootstrapper.exe is installed on this server:
// <Program Files>\<product>\Deployment\Bootstrapper.exe, Program Files read from the environment
// (ProgramFiles, else <SystemDrive>\Program Files), never assumed to be on C:.
func DefaultBootstrapperPath(product string, getenv func(string) string) (string, error) {
	dir, ok := deploymentDirs[product]
	if !ok {
		return "", fmt.Errorf("unknown product %q (want %s, %s or %s)", product,
			protocol.ProductLync2013, protocol.ProductSfB2015, protocol.ProductSfB2019)
	}
	programFiles := strings.TrimRight(getenv("ProgramFiles"), `\`)
	if programFiles == "" {
		drive := strings.TrimRight(getenv("SystemDrive"), `\`)
		if drive == "" {
			return "", fmt.Errorf("neither ProgramFiles nor SystemDrive is set in the agent's environment: cannot tell where %s is installed; set --bootstrapper", dir)
		}
		programFiles = drive + `\Program Files`
	}
	return programFiles + `\` + dir + `\Bootstrapper.exe`, nil
}

// RelationshipPoolProperties are the property names of Get-CsPoolBackupRelationship's answer that
// may hold the backup pool's FQDN, in the order they are tried. UNVERIFIED: the cmdlet's output is
// not documented.
var RelationshipPoolProperties = []string{"BackupPoolFqdn"}
