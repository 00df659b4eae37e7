package powershell

import (
	"fmt"
	"strings"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Everything the PowerShell host ever executes is in this file, as constants. Parameters never
// become script text: they arrive as JSON on stdin, are parsed with ConvertFrom-Json and are only
// ever used as values (cmdlet arguments, splatted hashtables, strings in messages).
//
// Stdin layout: loaderScript (one line, run by `powershell.exe -Command -`), then the body
// (bodyPrelude + the product's import block + bodyFunctions + bodyLoop), then bootstrapSentinel.
// The loader collects the body up to the sentinel and dot-sources it as one script block, so the
// body can use multi-line constructs, which `-Command -` would otherwise run line by line.

// replyMarker starts every protocol line the host writes; anything else on stdout is noise
// (warnings, banners) and is only logged.
const replyMarker = "<<LYNCAGENT>>"

// bootstrapSentinel ends the body on stdin.
const bootstrapSentinel = "#LYNCAGENT-END-OF-BOOTSTRAP"

// loaderScript is the single line `-Command -` runs. It must stay on one line. If the body fails
// (parse error), the process exits instead of falling back to reading stdin as commands.
const loaderScript = `$ErrorActionPreference = 'Stop'; $lyncAgentBody = New-Object System.Text.StringBuilder; while ($true) { $lyncAgentLine = [Console]::In.ReadLine(); if ($null -eq $lyncAgentLine) { [Environment]::Exit(3) }; if ($lyncAgentLine -ceq '#LYNCAGENT-END-OF-BOOTSTRAP') { break }; [void]$lyncAgentBody.AppendLine($lyncAgentLine) }; try { . ([ScriptBlock]::Create($lyncAgentBody.ToString())) } catch { [Console]::Error.WriteLine('lync-agent: bootstrap script failed: ' + $_); [Environment]::Exit(4) }; [Environment]::Exit(0)`

// bodyPrelude sets the session up and defines the reply helpers.
const bodyPrelude = `# lync-agent PowerShell host: one JSON request per line on stdin, one reply line on stdout
# starting with <<LYNCAGENT>>. Request values are data; nothing read from stdin is evaluated.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$ConfirmPreference = 'None'
# UTF-8 replies; without a console (a service's child) setting it can throw, and ASCII still works.
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding -ArgumentList $false } catch { }
# Windows PowerShell 3-5 give arrays an ETS Count that makes ConvertTo-Json emit {"value":[...],"Count":n}.
Remove-TypeData -TypeName System.Array -ErrorAction SilentlyContinue

function Send-AgentReply {
    param($Reply)
    $json = ConvertTo-Json -InputObject $Reply -Compress -Depth 6
    [Console]::Out.WriteLine('<<LYNCAGENT>>' + $json)
    [Console]::Out.Flush()
}

function ConvertTo-AgentError {
    param($ErrorRecord)
    $ex = $ErrorRecord.Exception
    $messages = @()
    $innerType = ''
    $e = $ex
    while ($null -ne $e) {
        $messages += [string]$e.Message
        $innerType = $e.GetType().FullName
        $e = $e.InnerException
    }
    @{
        type      = $ex.GetType().FullName
        innerType = $innerType
        message   = [string]$ex.Message
        detail    = ($messages -join ' | ')
        category  = [string]$ErrorRecord.CategoryInfo.Category
        errorId   = [string]$ErrorRecord.FullyQualifiedErrorId
    }
}

function Stop-AgentNotFound {
    param([string]$Message)
    throw (New-Object System.Management.Automation.ItemNotFoundException -ArgumentList $Message)
}

# ConvertTo-AgentStrings turns a property that may be $null, one object or a collection into a
# string array that ConvertTo-Json always writes as a JSON array.
function ConvertTo-AgentStrings {
    param($Items)
    $out = New-Object System.Collections.Generic.List[string]
    foreach ($i in @($Items)) {
        if ($null -ne $i) { $out.Add([string]$i) }
    }
    return ,$out.ToArray()
}

function Get-AgentBackupPool {
    param([string]$Fqdn)
    # UNVERIFIED: the property name of Microsoft.Rtc.Management.Hadr.BackupService.BackupRelation
    # (BackupPoolFqdn), and that an unpaired pool answers $null or an empty value, not an error.
    $rel = @(Get-CsPoolBackupRelationship -PoolFqdn $Fqdn)
    if ($rel.Count -eq 0 -or $null -eq $rel[0]) { return '' }
    return [string]$rel[0].BackupPoolFqdn
}

`

// Import blocks, one per module. The module is imported once per host; a failure is reported as
// the id 0 reply and ends the process.
const (
	importLync = `try {
    Import-Module -Name 'Lync' -ErrorAction Stop
} catch {
    Send-AgentReply @{ id = 0; ok = $false; error = (ConvertTo-AgentError $_) }
    [Environment]::Exit(2)
}
$lyncAgentModule = 'Lync'

`
	importSkypeForBusiness = `try {
    Import-Module -Name 'SkypeForBusiness' -ErrorAction Stop
} catch {
    Send-AgentReply @{ id = 0; ok = $false; error = (ConvertTo-AgentError $_) }
    [Environment]::Exit(2)
}
$lyncAgentModule = 'SkypeForBusiness'

`
)

// bodyFunctions holds one function per operation. Each takes the request's params object and
// returns one hashtable (or nothing); cmdlet output that is not the answer goes to Out-Null.
const bodyFunctions = `function Invoke-AgentIdentity {
    param($p)
    $server = [string]$p.serverFqdn
    if ([string]::IsNullOrEmpty($server)) {
        $computer = @(Get-CsComputer -Local)
    } else {
        $computer = @(Get-CsComputer -Identity $server)
    }
    if ($computer.Count -eq 0 -or $null -eq $computer[0]) {
        Stop-AgentNotFound ('Cannot find computer "' + $server + '" in the topology.')
    }
    @{ serverFqdn = [string]$computer[0].Fqdn; poolFqdn = [string]$computer[0].Pool }
}

function Invoke-AgentGetPool {
    param($p)
    $fqdn = [string]$p.fqdn
    $pool = @(Get-CsPool -Identity $fqdn)
    if ($pool.Count -eq 0 -or $null -eq $pool[0]) {
        Stop-AgentNotFound ('Cannot find pool "' + $fqdn + '" in the topology.')
    }
    $pool = $pool[0]
    # UNVERIFIED: the Version property of the Registrar service (the Go side maps it to a name).
    $version = $null
    $registrar = @(Get-CsService -Registrar -PoolFqdn $fqdn)
    if ($registrar.Count -gt 0 -and $null -ne $registrar[0]) { $version = $registrar[0].Version }
    # UNVERIFIED: the Active property that tells the active CMS from a standby one.
    $cms = @()
    foreach ($s in @(Get-CsService -CentralManagement)) {
        if ($null -ne $s) { $cms += @{ poolFqdn = [string]$s.PoolFqdn; active = $s.Active } }
    }
    @{
        fqdn             = [string]$pool.Fqdn
        site             = [string]$pool.Site
        computers        = (ConvertTo-AgentStrings $pool.Computers)
        services         = (ConvertTo-AgentStrings $pool.Services)
        registrarVersion = $version
        backupPoolFqdn   = (Get-AgentBackupPool $fqdn)
        cms              = $cms
    }
}

function Invoke-AgentGetBackupStatus {
    param($p)
    $fqdn = [string]$p.fqdn
    $modules = @()
    foreach ($status in @(Get-CsBackupServiceStatus -PoolFqdn $fqdn)) {
        if ($null -eq $status) { continue }
        foreach ($m in @($status.BackupModules)) {
            if ($null -eq $m) { continue }
            # Enums go by name: ConvertTo-Json in Windows PowerShell would write their numbers.
            $modules += @{
                identity     = [string]$m.Identity
                exportStatus = [string]$m.ExportStatus
                importStatus = [string]$m.ImportStatus
            }
        }
    }
    @{ poolFqdn = $fqdn; backupPoolFqdn = (Get-AgentBackupPool $fqdn); modules = $modules }
}

function Invoke-AgentGetBackupService {
    param($p)
    try {
        $svc = @(Get-CsWindowsService -Name 'LYNCBACKUP' -ExcludeActivityLevel)
    } catch {
        $failure = $_
        # The "not installed" error text is undocumented: ask for the full list instead of parsing it.
        $all = @(Get-CsWindowsService -ExcludeActivityLevel | Where-Object { $_.Name -eq 'LYNCBACKUP' })
        if ($all.Count -eq 0) { return @{ installed = $false; status = '' } }
        throw $failure
    }
    if ($svc.Count -eq 0 -or $null -eq $svc[0]) { return @{ installed = $false; status = '' } }
    @{ installed = $true; status = [string]$svc[0].Status }
}

function Invoke-AgentStartBackupService {
    param($p)
    Start-CsWindowsService -Name 'LYNCBACKUP' | Out-Null
}

function Invoke-AgentSyncBackup {
    param($p)
    Invoke-CsBackupServiceSync -PoolFqdn ([string]$p.poolFqdn) | Out-Null
}

# Invoke-AgentPairPools: UNVERIFIED pairing mechanism (see PairingMechanismVerified in Go).
# Topology Builder's "Associated backup pool" is the documented way; Set-CsRegistrar
# -BackupRegistrar is the only cmdlet that writes a backup relationship. Whether it alone equals a
# full pairing (Get-CsPoolBackupRelationship, the backup service) needs a lab check.
function Invoke-AgentPairPools {
    param($p)
    $a = [string]$p.primaryFqdn
    $b = [string]$p.backupFqdn
    $voice = $p.voiceFailover
    foreach ($pair in @(@($a, $b), @($b, $a))) {
        $set = @{
            Identity        = 'Registrar:' + $pair[0]
            BackupRegistrar = 'Registrar:' + $pair[1]
            Confirm         = $false
        }
        if ($null -ne $voice) {
            $set['EnableAutomaticFailover'] = [bool]$voice.enabled
            # Seconds on the wire; the cmdlet takes a TimeSpan (30 s to 24 h).
            if ([int]$voice.failureDetectionIntervalSeconds -gt 0) {
                $set['FailureDetectionInterval'] = [TimeSpan]::FromSeconds([int]$voice.failureDetectionIntervalSeconds)
            }
            if ([int]$voice.failbackDetectionIntervalSeconds -gt 0) {
                $set['FailbackDetectionInterval'] = [TimeSpan]::FromSeconds([int]$voice.failbackDetectionIntervalSeconds)
            }
        }
        Set-CsRegistrar @set | Out-Null
    }
    Enable-CsTopology | Out-Null
}

# Invoke-AgentUnpair: UNVERIFIED, the reverse of Invoke-AgentPairPools (clearing with $null).
function Invoke-AgentUnpair {
    param($p)
    foreach ($fqdn in @([string]$p.primaryFqdn, [string]$p.backupFqdn)) {
        Set-CsRegistrar -Identity ('Registrar:' + $fqdn) -BackupRegistrar $null -Confirm:$false | Out-Null
    }
    Enable-CsTopology | Out-Null
}

`

// bodyLoop is the dispatch table and the request loop. Op names are only ever hashtable keys.
const bodyLoop = `$lyncAgentOps = @{
    'Identity'           = 'Invoke-AgentIdentity'
    'GetPool'            = 'Invoke-AgentGetPool'
    'GetBackupStatus'    = 'Invoke-AgentGetBackupStatus'
    'GetBackupService'   = 'Invoke-AgentGetBackupService'
    'StartBackupService' = 'Invoke-AgentStartBackupService'
    'SyncBackup'         = 'Invoke-AgentSyncBackup'
    'PairPools'          = 'Invoke-AgentPairPools'
    'Unpair'             = 'Invoke-AgentUnpair'
}

Send-AgentReply @{ id = 0; ok = $true; result = @{ module = $lyncAgentModule; psVersion = [string]$PSVersionTable.PSVersion } }

while ($true) {
    $line = [Console]::In.ReadLine()
    if ($null -eq $line) { break }
    if ($line.Trim().Length -eq 0) { continue }
    $id = -1
    try {
        $req = ConvertFrom-Json -InputObject $line
        $id = $req.id
        $op = [string]$req.op
        if (-not $lyncAgentOps.ContainsKey($op)) {
            throw (New-Object System.ArgumentException -ArgumentList ('unknown operation: ' + $op))
        }
        $result = & $lyncAgentOps[$op] $req.params
        Send-AgentReply @{ id = $id; ok = $true; result = $result }
    } catch {
        Send-AgentReply @{ id = $id; ok = $false; error = (ConvertTo-AgentError $_) }
    }
}
`

// Operation names: the keys of $lyncAgentOps.
const (
	opIdentity           = "Identity"
	opGetPool            = "GetPool"
	opGetBackupStatus    = "GetBackupStatus"
	opGetBackupService   = "GetBackupService"
	opStartBackupService = "StartBackupService"
	opSyncBackup         = "SyncBackup"
	opPairPools          = "PairPools"
	opUnpair             = "Unpair"
)

// product is what the product name decides: the module and the Bootstrapper.
type product struct {
	name         string
	module       string
	importBlock  string
	bootstrapper string
}

var products = map[string]product{
	protocol.ProductLync2013: {
		name: "Lync Server 2013", module: "Lync", importBlock: importLync,
		bootstrapper: `C:\Program Files\Microsoft Lync Server 2013\Deployment\Bootstrapper.exe`,
	},
	protocol.ProductSfB2015: {
		name: "Skype for Business Server 2015", module: "SkypeForBusiness", importBlock: importSkypeForBusiness,
		bootstrapper: `C:\Program Files\Skype for Business Server 2015\Deployment\Bootstrapper.exe`,
	},
	protocol.ProductSfB2019: {
		name: "Skype for Business Server 2019", module: "SkypeForBusiness", importBlock: importSkypeForBusiness,
		bootstrapper: `C:\Program Files\Skype for Business Server 2019\Deployment\Bootstrapper.exe`,
	},
}

func lookupProduct(name string) (product, error) {
	p, ok := products[name]
	if !ok {
		return product{}, fmt.Errorf("unknown product %q (want %s, %s or %s)", name,
			protocol.ProductLync2013, protocol.ProductSfB2015, protocol.ProductSfB2019)
	}
	return p, nil
}

// bootstrapInput is everything written to the host's stdin before the first request.
func bootstrapInput(productName string) (string, error) {
	p, err := lookupProduct(productName)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString(loaderScript)
	sb.WriteString("\n")
	sb.WriteString(bodyPrelude)
	sb.WriteString(p.importBlock)
	sb.WriteString(bodyFunctions)
	sb.WriteString(bodyLoop)
	sb.WriteString(bootstrapSentinel)
	sb.WriteString("\n")
	return sb.String(), nil
}
