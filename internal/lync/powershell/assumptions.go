package powershell

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
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
// may hold the backup pool's FQDN, in the order they are tried (compared case-insensitively).
// UNVERIFIED: the reference documents only the type (Microsoft.Rtc.Management.Hadr.BackupService.
// BackupRelation) and that the cmdlet "returns the fully qualified domain name of the backup pool";
// no public page shows its properties. BackupPoolFqdn is the name Get-CsUserPoolInfo documents for
// the same fact about a user. An answer that is a string is read as the FQDN itself; an object with
// none of these properties is an error naming the properties it has, never "unpaired".
var RelationshipPoolProperties = []string{"BackupPoolFqdn"}

// ServiceVersionProducts maps the ServiceVersion of a pool's services in the published topology
// document (Get-CsTopology -AsXml: <Service ServiceVersion="n">) to the product. 8 is in a Skype for
// Business Server 2019 document and 7 in a Skype for Business Server 2015 one (public deployment
// scripts and samples); UNVERIFIED: 6 for Lync Server 2013 and 5 for Lync Server 2010, which follow
// the numbering.
var ServiceVersionProducts = map[int]string{
	5: "Lync Server 2010",
	6: "Lync Server 2013",
	7: "Skype for Business Server 2015",
	8: "Skype for Business Server 2019",
}

// serverVersionMajors maps the major version in a Get-CsServerVersion answer to the product. The
// reference's example, 5.0.8308, is Lync Server 2013; UNVERIFIED: the others (the products' build
// numbers: 4.0.7577 Lync Server 2010, 6.0.9319 Skype for Business Server 2015, 7.0.2046 Skype for
// Business Server 2019).
var serverVersionMajors = map[int]string{
	4: "Lync Server 2010",
	5: "Lync Server 2013",
	6: "Skype for Business Server 2015",
	7: "Skype for Business Server 2019",
}

var (
	productNameText   = regexp.MustCompile(`(?i)\b(lync server 2010|lync server 2013|skype for business server 2015|skype for business server 2019)\b`)
	serverVersionText = regexp.MustCompile(`\b(\d+)\.\d+\.\d+`)
)

// ServerVersionProduct is the product a Get-CsServerVersion answer names, "" when it names none
// this package knows. The reference documents the answer as the installed version number with the
// licensing information (for example 5.0.8308); UNVERIFIED: whether the text also names the
// product (taken first when it does), and the numbering in serverVersionMajors.
func ServerVersionProduct(answer string) string {
	if m := productNameText.FindString(answer); m != "" {
		for _, name := range ServiceVersionProducts {
			if strings.EqualFold(name, m) {
				return name
			}
		}
	}
	if m := serverVersionText.FindStringSubmatch(answer); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return serverVersionMajors[n]
		}
	}
	return ""
}

// EdgeNextHopProperties are the property names of an Edge pool's entry in Get-CsService
// -EdgeServer that may hold its next hop (the Registrar service Set-CsEdgeServer -Registrar
// writes, "Registrar:<pool>"), in the order they are tried (compared case-insensitively).
// UNVERIFIED: the reference documents Set-CsEdgeServer's -Registrar parameter and that it modifies
// a DisplayEdgeServer object, not the name of the property Get-CsService shows it in. An Edge pool
// whose entry has none of them has an unknown next hop: no Front End pool lists it, and
// MoveEdgeNextHop sets it without checking before or after.
var EdgeNextHopProperties = []string{"Registrar"}

// UserPoolServingProperties are the property names of Get-CsUserPoolInfo's answer (for one user
// homed on a pool) that name the pool the user signs in to, in the order they are tried.
var UserPoolServingProperties = []string{"PrimaryPoolFqdn"}

// FailedOverTo is the backend's one reading of whether pool's users are served by another pool
// (Pool.FailedOverTo): the pool named by the first of UserPoolServingProperties that Get-CsUserPoolInfo's
// answer (answer, for a user homed on pool) has, when it is not pool itself; "" when it is pool.
// An answer with none of the properties is an error naming those it has.
//
// UNVERIFIED, and the weakest guess of this package: no public source says how to read that a
// pool is failed over. Invoke-CsPoolFailOver does not rehome users (their RegistrarPool stays);
// the reference says a failed-over user registers with the backup pool's Front End, which it lists
// as BackupPoolPrimaryRegistrar whether the pool is failed over or not. The guess is that the
// pool Get-CsUserPoolInfo calls the user's primary pool is the one serving it. `lync-agent doctor`
// checks that the answer has the property and reads this pool as serving its own users; only a
// lab failover can tell whether it then names the backup pool. Until then Pool.FailedOverTo may
// stay "" after a failover: the failover cmdlets refuse what does not fit (a second failover, a
// failback of a pool not failed over), and the agent never repeats a failover step on a guess.
func FailedOverTo(pool string, answer map[string]string) (string, error) {
	for _, name := range UserPoolServingProperties {
		for k, v := range answer {
			if !strings.EqualFold(k, name) {
				continue
			}
			serving := cleanFQDN(v)
			if serving == "" {
				return "", fmt.Errorf("Get-CsUserPoolInfo answered an empty %s", k)
			}
			if protocol.SameFQDN(serving, pool) {
				return "", nil
			}
			return serving, nil
		}
	}
	names := make([]string, 0, len(answer))
	for k := range answer {
		names = append(names, k)
	}
	slices.Sort(names)
	return "", fmt.Errorf("Get-CsUserPoolInfo answered the properties [%s], none of which is one this backend reads (%s: UserPoolServingProperties)",
		strings.Join(names, ", "), strings.Join(UserPoolServingProperties, ", "))
}

// BackendStore is the SQL Server store of a pool's back end, where a paired pool keeps its
// standby Central Management store: Invoke-CsManagementServerFailover -BackupSqlServerFqdn and
// -BackupSqlInstanceName in a disaster. UNVERIFIED: read from the topology as the pool's UserServer
// service's UserDatabase service (Get-CsService -UserServer -PoolFqdn <pool>: UserDatabase;
// Get-CsService -Identity <that>: PoolFqdn, SqlInstanceName), on the guess that the standby CMS
// database is on the same store as the pool's user database. A mirrored back end whose mirror is
// the principal needs -BackupMirrorSqlServerFqdn instead (Microsoft's procedure checks
// Get-CsDatabaseMirrorState first): the agent does not handle that case.
type BackendStore struct {
	UserDatabase    string `json:"userDatabase"`
	SQLServerFQDN   string `json:"sqlServerFqdn"`
	SQLInstanceName string `json:"sqlInstanceName"`
}
