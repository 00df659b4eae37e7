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
# What the host keeps between requests (the topology document); a hashtable, so that functions
# change its entries without scope modifiers.
$lyncAgentCache = @{}

function Send-AgentReply {
    param($Reply)
    $json = ConvertTo-Json -InputObject $Reply -Compress -Depth 8
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

# Get-AgentRelationship is Get-CsPoolBackupRelationship's answer for a pool, caught here so that
# a failure of this cmdlet is reported as its own (never as "pool not found", never as "unpaired"):
# every answered object's properties as strings (Go picks the backup pool by name:
# RelationshipPoolProperties), or the error. No object ($null, nothing) is an unpaired pool.
# UNVERIFIED: the answer's property names, and that an unpaired pool answers $null.
function Get-AgentRelationship {
    param([string]$Fqdn)
    try {
        $answers = @()
        foreach ($r in @(Get-CsPoolBackupRelationship -PoolFqdn $Fqdn)) {
            if ($null -eq $r) { continue }
            $props = @{}
            if ($r -is [string]) {
                # The reference says the cmdlet "returns the fully qualified domain name of the backup pool".
                $props['(string)'] = $r
            } else {
                foreach ($pp in @($r.PSObject.Properties)) {
                    $v = ''
                    try { $v = [string]$pp.Value } catch { $v = '' }
                    $props[[string]$pp.Name] = $v
                }
            }
            $answers += $props
        }
        return @{ answers = $answers; error = $null }
    } catch {
        return @{ answers = @(); error = (ConvertTo-AgentError $_) }
    }
}

# ConvertTo-AgentProperties is an object's properties as strings, by name (a property that cannot
# be read is ''): Go picks the ones it reads by name, and an answer without them is an error
# naming what it had, never an empty value.
function ConvertTo-AgentProperties {
    param($Object)
    $props = @{}
    foreach ($pp in @($Object.PSObject.Properties)) {
        $v = ''
        try { $v = [string]$pp.Value } catch { $v = '' }
        $props[[string]$pp.Name] = $v
    }
    return $props
}

# Get-AgentEdgePools is every Edge pool of the topology (Get-CsService -EdgeServer), each as its
# properties, or the cmdlet's failure. Go reads each Edge pool's next hop by name
# (EdgeNextHopProperties). UNVERIFIED: the property that holds the next hop (Set-CsEdgeServer
# -Registrar's value).
function Get-AgentEdgePools {
    try {
        $answers = @()
        foreach ($e in @(Get-CsService -EdgeServer)) {
            if ($null -eq $e) { continue }
            $answers += (ConvertTo-AgentProperties $e)
        }
        return @{ answers = $answers; error = $null }
    } catch {
        return @{ answers = @(); error = (ConvertTo-AgentError $_) }
    }
}

# Get-AgentFailoverState is the backend's one read of whom a pool's users sign in to: UNVERIFIED
# (FailedOverTo in Go). It asks Get-CsUserPoolInfo about one user homed on the pool (the filter is
# the pool's FQDN, which Go validated as an RFC 1123 name: no quote can be in it) and answers the
# user and Get-CsUserPoolInfo's properties, or the failure; user '' when no user is homed there.
function Get-AgentFailoverState {
    param([string]$Fqdn)
    try {
        $user = $null
        foreach ($u in @(Get-CsUser -Filter ("RegistrarPool -eq '" + $Fqdn + "'") -ResultSize 1)) {
            if ($null -ne $u) { $user = $u; break }
        }
        if ($null -eq $user) { return @{ user = ''; answer = @{}; error = $null } }
        $sip = [string]$user.SipAddress
        $answer = @{}
        foreach ($i in @(Get-CsUserPoolInfo -Identity $sip)) {
            if ($null -ne $i) { $answer = (ConvertTo-AgentProperties $i); break }
        }
        return @{ user = $sip; answer = $answer; error = $null }
    } catch {
        return @{ user = ''; answer = @{}; error = (ConvertTo-AgentError $_) }
    }
}

# Get-AgentBackendStore is the back-end SQL Server store of a pool, where a paired pool keeps its
# standby Central Management store: UNVERIFIED (BackendStore in Go): the pool's UserServer service
# names its UserDatabase service, whose PoolFqdn is the SQL Server and SqlInstanceName the instance.
function Get-AgentBackendStore {
    param([string]$Fqdn)
    $us = $null
    foreach ($x in @(Get-CsService -UserServer -PoolFqdn $Fqdn)) {
        if ($null -ne $x) { $us = $x; break }
    }
    if ($null -eq $us) { Stop-AgentNotFound ('Cannot find the UserServer service of pool "' + $Fqdn + '" in the topology.') }
    $dbId = [string]$us.UserDatabase
    if ($dbId -eq '') { return @{ userDatabase = ''; sqlServerFqdn = ''; sqlInstanceName = '' } }
    $db = $null
    foreach ($x in @(Get-CsService -Identity $dbId)) {
        if ($null -ne $x) { $db = $x; break }
    }
    if ($null -eq $db) { Stop-AgentNotFound ('Cannot find "' + $dbId + '" in the topology.') }
    return @{ userDatabase = $dbId; sqlServerFqdn = [string]$db.PoolFqdn; sqlInstanceName = [string]$db.SqlInstanceName }
}

# Get-AgentTopologyFacts reads the pool in the published topology document (Get-CsTopology -AsXml):
# its <Cluster> attributes, and each <Service> installed on it, directly or on one of its SQL
# Server instances (a Standard Edition server holds its own user store). Go decides the edition and
# the version from them. The document is the whole deployment: it is read at most once a minute.
function Get-AgentTopologyFacts {
    param([string]$Fqdn)
    $now = [DateTime]::UtcNow
    if ($null -eq $lyncAgentCache['topology'] -or ($now - $lyncAgentCache['topologyRead']).TotalSeconds -gt 60) {
        $lyncAgentCache['topology'] = [xml](Get-CsTopology -AsXml)
        $lyncAgentCache['topologyRead'] = $now
    }
    $topology = $lyncAgentCache['topology']
    $cluster = $null
    foreach ($c in @($topology.Topology.Clusters.Cluster)) {
        if ($null -ne $c -and [string]$c.Fqdn -eq $Fqdn) { $cluster = $c; break }
    }
    if ($null -eq $cluster) { return @{ found = $false; attributes = @{}; services = @() } }
    $attributes = @{}
    foreach ($a in @($cluster.Attributes)) {
        if ($null -ne $a) { $attributes[[string]$a.Name] = [string]$a.Value }
    }
    $site = [string]$cluster.ClusterId.SiteId
    $number = [string]$cluster.ClusterId.Number
    $services = @()
    foreach ($s in @($topology.Topology.Services.Service)) {
        if ($null -eq $s -or $null -eq $s.InstalledOn) { continue }
        $on = ''
        $id = $s.InstalledOn.ClusterId
        if ($null -ne $id -and [string]$id.SiteId -eq $site -and [string]$id.Number -eq $number) { $on = 'cluster' }
        foreach ($sql in @($s.InstalledOn.SqlInstanceId)) {
            if ($null -eq $sql) { continue }
            $id = $sql.ClusterId
            if ($null -ne $id -and [string]$id.SiteId -eq $site -and [string]$id.Number -eq $number) { $on = 'sql' }
        }
        if ($on -eq '') { continue }
        $services += @{
            role           = [string]$s.ServiceId.RoleName
            serviceVersion = [string]$s.ServiceVersion
            roleVersion    = [string]$s.RoleVersion
            on             = $on
        }
    }
    return @{ found = $true; attributes = $attributes; services = $services }
}

# Get-AgentServerVersion is Get-CsServerVersion on this server: the product and version installed
# here, with its licence ('' when it cannot tell: the read goes on without it).
function Get-AgentServerVersion {
    try { return [string](Get-CsServerVersion) } catch { return '' }
}

# Get-AgentBackupServiceStarted is when the running LYNCBACKUP's process started (UTC, ISO 8601), or
# '' when it cannot tell. UNVERIFIED: that LYNCBACKUP runs in a process of its own.
function Get-AgentBackupServiceStarted {
    try {
        $wmi = @(Get-WmiObject -Class Win32_Service -Filter "Name='LYNCBACKUP'")
        if ($wmi.Count -eq 0 -or $null -eq $wmi[0]) { return '' }
        $procId = [int]$wmi[0].ProcessId
        if ($procId -le 0) { return '' }
        $proc = Get-Process -Id $procId -ErrorAction Stop
        return $proc.StartTime.ToUniversalTime().ToString('o')
    } catch {
        return ''
    }
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
    # UNVERIFIED: the Active property that tells the active CMS from a standby one.
    $cms = @()
    foreach ($s in @(Get-CsService -CentralManagement)) {
        if ($null -ne $s) { $cms += @{ poolFqdn = [string]$s.PoolFqdn; active = $s.Active } }
    }
    @{
        fqdn          = [string]$pool.Fqdn
        site          = [string]$pool.Site
        computers     = (ConvertTo-AgentStrings $pool.Computers)
        services      = (ConvertTo-AgentStrings $pool.Services)
        cms           = $cms
        relationship  = (Get-AgentRelationship $fqdn)
        topology      = (Get-AgentTopologyFacts ([string]$pool.Fqdn))
        serverVersion = (Get-AgentServerVersion)
        edges         = (Get-AgentEdgePools)
        failover      = (Get-AgentFailoverState $fqdn)
    }
}

# Invoke-AgentGetCmsStatus: where the active Central Management store is, as Microsoft's failover
# procedure reads it (Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus:
# ActiveMasterFqdn, ActiveFileTransferAgents; empty while the CMS does not answer), and the pool of
# the active master (Get-CsComputer; '' when it cannot tell).
function Invoke-AgentGetCmsStatus {
    param($p)
    $st = $null
    foreach ($x in @(Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus)) {
        if ($null -ne $x) { $st = $x; break }
    }
    $master = ''
    $agents = @()
    if ($null -ne $st) {
        $master = [string]$st.ActiveMasterFqdn
        $agents = (ConvertTo-AgentStrings $st.ActiveFileTransferAgents)
    }
    $pool = ''
    if ($master -ne '') {
        try {
            $c = @(Get-CsComputer -Identity $master)
            if ($c.Count -gt 0 -and $null -ne $c[0]) { $pool = [string]$c[0].Pool }
        } catch { $pool = '' }
    }
    @{ found = ($null -ne $st); activeMasterFqdn = $master; activeFileTransferAgents = $agents; activeMasterPool = $pool }
}

function Invoke-AgentGetBackendStore {
    param($p)
    Get-AgentBackendStore ([string]$p.poolFqdn)
}

function Invoke-AgentGetEdgePools {
    param($p)
    Get-AgentEdgePools
}

# Invoke-AgentGetFrontEnd: the Front End service (RTCSRV) on this server.
function Invoke-AgentGetFrontEnd {
    param($p)
    $svc = @(Get-CsWindowsService -Name 'RTCSRV' -ExcludeActivityLevel)
    if ($svc.Count -eq 0 -or $null -eq $svc[0]) { return @{ installed = $false; status = '' } }
    @{ installed = $true; status = [string]$svc[0].Status }
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
    # There is one, global, collection of Backup Service settings (Get-CsBackupServiceConfiguration).
    # Not reading it leaves 0 (unknown) and does not hide the status.
    $interval = 0
    $intervalError = ''
    try {
        $cfg = @(Get-CsBackupServiceConfiguration -Identity 'global')
        if ($cfg.Count -gt 0 -and $null -ne $cfg[0] -and $null -ne $cfg[0].SyncInterval) {
            $interval = [int][Math]::Floor(([TimeSpan]$cfg[0].SyncInterval).TotalSeconds)
        } else {
            $intervalError = 'Get-CsBackupServiceConfiguration -Identity global answered no SyncInterval'
        }
    } catch {
        $intervalError = [string]$_.Exception.Message
    }
    @{
        poolFqdn            = $fqdn
        relationship        = (Get-AgentRelationship $fqdn)
        modules             = $modules
        syncIntervalSeconds = $interval
        syncIntervalError   = $intervalError
    }
}

function Invoke-AgentGetBackupService {
    param($p)
    try {
        $svc = @(Get-CsWindowsService -Name 'LYNCBACKUP' -ExcludeActivityLevel)
    } catch {
        $failure = $_
        # The "not installed" error text is undocumented: ask for the full list instead of parsing it.
        $all = @(Get-CsWindowsService -ExcludeActivityLevel | Where-Object { $_.Name -eq 'LYNCBACKUP' })
        if ($all.Count -eq 0) { return @{ installed = $false; status = ''; started = '' } }
        throw $failure
    }
    if ($svc.Count -eq 0 -or $null -eq $svc[0]) { return @{ installed = $false; status = ''; started = '' } }
    $status = [string]$svc[0].Status
    $started = ''
    if ($status -eq 'Running') { $started = (Get-AgentBackupServiceStarted) }
    @{ installed = $true; status = $status; started = $started }
}

function Invoke-AgentStartBackupService {
    param($p)
    Start-CsWindowsService -Name 'LYNCBACKUP' | Out-Null
}

# Invoke-AgentRestartBackupService: a running LYNCBACKUP does not pick up a changed pairing, and
# Microsoft's procedure stops and starts it ("Front End pool ABC failover procedure in Lync Server
# 2013", step 24). A stopped service is only started.
function Invoke-AgentRestartBackupService {
    param($p)
    $svc = @(Get-CsWindowsService -Name 'LYNCBACKUP' -ExcludeActivityLevel)
    if ($svc.Count -eq 0 -or $null -eq $svc[0]) {
        Stop-AgentNotFound 'Cannot find any service with service name ''LYNCBACKUP''.'
    }
    $before = [string]$svc[0].Status
    $stopped = $false
    if ($before -ne 'Stopped') {
        Stop-CsWindowsService -Name 'LYNCBACKUP' | Out-Null
        $stopped = $true
    }
    Start-CsWindowsService -Name 'LYNCBACKUP' | Out-Null
    @{ before = $before; stopped = $stopped }
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

# The failover cmdlets ("Failing over and failing back a pool"). None prompts: -Confirm:$false, and
# -NonInteractive makes any other prompt an error rather than a wait. -WhatIf for a rehearsal.

# Invoke-AgentFailoverCMS runs on a Front End of the pool the CMS moves to: without a target store
# when the CMS answers; in a disaster with the backup pool's back-end store and -Force.
function Invoke-AgentFailoverCMS {
    param($p)
    $set = @{ Confirm = $false }
    if ([bool]$p.disaster) {
        $set['BackupSqlServerFqdn'] = [string]$p.backupSqlServerFqdn
        if (-not [string]::IsNullOrEmpty([string]$p.backupSqlInstanceName)) { $set['BackupSqlInstanceName'] = [string]$p.backupSqlInstanceName }
        $set['Force'] = $true
    }
    if ([bool]$p.whatIf) { $set['WhatIf'] = $true }
    Invoke-CsManagementServerFailover @set | Out-Null
}

function Invoke-AgentMoveEdgeNextHop {
    param($p)
    $set = @{
        Identity  = 'EdgeServer:' + [string]$p.edgePoolFqdn
        Registrar = 'Registrar:' + [string]$p.registrarFqdn
        Confirm   = $false
    }
    if ([bool]$p.whatIf) { $set['WhatIf'] = $true }
    Set-CsEdgeServer @set | Out-Null
}

function Invoke-AgentFailoverPool {
    param($p)
    $set = @{ PoolFqdn = [string]$p.poolFqdn; Confirm = $false }
    if ([bool]$p.disasterMode) { $set['DisasterMode'] = $true }
    if ([bool]$p.whatIf) { $set['WhatIf'] = $true }
    Invoke-CsPoolFailOver @set | Out-Null
}

function Invoke-AgentFailbackPool {
    param($p)
    $set = @{ PoolFqdn = [string]$p.poolFqdn; Confirm = $false }
    if ([bool]$p.whatIf) { $set['WhatIf'] = $true }
    Invoke-CsPoolFailBack @set | Out-Null
}

# Invoke-AgentRemoveUserStoreBackupData removes the user data a pool still holds for a pool it is no
# longer paired with ("Front End pool ABC failover procedure in Lync Server 2013", step 21).
function Invoke-AgentRemoveUserStoreBackupData {
    param($p)
    Remove-CsUserStoreBackupData -PoolFqdn ([string]$p.poolFqdn) -Confirm:$false | Out-Null
}

`

// bodyLoop is the dispatch table and the request loop. Op names are only ever hashtable keys.
const bodyLoop = `$lyncAgentOps = @{
    'Identity'                  = 'Invoke-AgentIdentity'
    'GetPool'                   = 'Invoke-AgentGetPool'
    'GetBackupStatus'           = 'Invoke-AgentGetBackupStatus'
    'GetBackupService'          = 'Invoke-AgentGetBackupService'
    'StartBackupService'        = 'Invoke-AgentStartBackupService'
    'RestartBackupService'      = 'Invoke-AgentRestartBackupService'
    'SyncBackup'                = 'Invoke-AgentSyncBackup'
    'PairPools'                 = 'Invoke-AgentPairPools'
    'Unpair'                    = 'Invoke-AgentUnpair'
    'RemoveUserStoreBackupData' = 'Invoke-AgentRemoveUserStoreBackupData'
    'GetCmsStatus'              = 'Invoke-AgentGetCmsStatus'
    'GetBackendStore'           = 'Invoke-AgentGetBackendStore'
    'GetEdgePools'              = 'Invoke-AgentGetEdgePools'
    'GetFrontEnd'               = 'Invoke-AgentGetFrontEnd'
    'FailoverCMS'               = 'Invoke-AgentFailoverCMS'
    'MoveEdgeNextHop'           = 'Invoke-AgentMoveEdgeNextHop'
    'FailoverPool'              = 'Invoke-AgentFailoverPool'
    'FailbackPool'              = 'Invoke-AgentFailbackPool'
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
	opIdentity                  = "Identity"
	opGetPool                   = "GetPool"
	opGetBackupStatus           = "GetBackupStatus"
	opGetBackupService          = "GetBackupService"
	opStartBackupService        = "StartBackupService"
	opRestartBackupService      = "RestartBackupService"
	opSyncBackup                = "SyncBackup"
	opPairPools                 = "PairPools"
	opUnpair                    = "Unpair"
	opRemoveUserStoreBackupData = "RemoveUserStoreBackupData"
	opGetCmsStatus              = "GetCmsStatus"
	opGetBackendStore           = "GetBackendStore"
	opGetEdgePools              = "GetEdgePools"
	opGetFrontEnd               = "GetFrontEnd"
	opFailoverCMS               = "FailoverCMS"
	opMoveEdgeNextHop           = "MoveEdgeNextHop"
	opFailoverPool              = "FailoverPool"
	opFailbackPool              = "FailbackPool"
)

// product is what the product name decides: the module and, for Bootstrapper, whether the
// documented step after it re-applies the installed cumulative update (Skype for Business Server).
// Bootstrapper's path is DefaultBootstrapperPath (assumptions.go).
type product struct {
	name           string
	module         string
	importBlock    string
	reapplyUpdates bool
}

var products = map[string]product{
	protocol.ProductLync2013: {name: "Lync Server 2013", module: "Lync", importBlock: importLync},
	protocol.ProductSfB2015: {
		name: "Skype for Business Server 2015", module: "SkypeForBusiness", importBlock: importSkypeForBusiness, reapplyUpdates: true,
	},
	protocol.ProductSfB2019: {
		name: "Skype for Business Server 2019", module: "SkypeForBusiness", importBlock: importSkypeForBusiness, reapplyUpdates: true,
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
