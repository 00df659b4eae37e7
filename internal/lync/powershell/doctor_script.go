package powershell

import "strings"

// The doctor's script: everything `lync-agent doctor` runs in PowerShell, as constants, like
// scripts.go. It goes to one powershell.exe with the backend's arguments: the backend's loader
// line, the backend's bodyPrelude (its helpers, among them the reads the backend's operations use:
// Get-AgentRelationship, Get-AgentTopologyFacts, Get-AgentBackupServiceStarted, so the doctor runs
// the backend's own code where there is some), the doctor's helpers, the product's module name,
// the probes and the backend's sentinel; then one request line,
// {"id":1,"op":"Doctor","params":{"serverFqdn":...}}, read with [Console]::In and ConvertFrom-Json
// as the backend's hosts read theirs. It answers one reply line after the backend's marker, whose
// result holds the raw facts; Go judges them (doctor.go).
//
// Each probe runs in its own try/catch, so one that fails (even Import-Module) does not stop the
// others, and records the error instead. It is read-only: Get-* and Test-* cmdlets, Get-WmiObject,
// Import-Module and .NET reads; doctor_test.go holds the reviewed copy (testdata/doctor-*.golden)
// to a list of allowed commands. Windows PowerShell 3.0 only: no ::new(), no ?. or ??, no ternary,
// no classes, no -AsHashtable. A change to the backend's loader or prelude changes this script too:
// review both and run go test ./internal/lync/powershell -run 'TestBootstrapGolden|TestDoctorGolden' -update.

// doctorOp and doctorID name the doctor's single request.
const (
	doctorOp = "Doctor"
	doctorID = 1
)

// doctorFunctions are the doctor's helpers; the backend's bodyPrelude (its reply and error
// helpers, and the read helpers the backend's operations use: Get-AgentRelationship,
// Get-AgentTopologyFacts, Get-AgentBackupServiceStarted) comes before them, so the doctor runs the
// backend's own reads where there are some.
const doctorFunctions = `# lync-agent doctor: read-only probes of this Front End server, answered in one reply line
# starting with <<LYNCAGENT>> whose result holds the raw facts. Nothing here changes the server.
$WarningPreference = 'SilentlyContinue'
$doctorClock = [Diagnostics.Stopwatch]::StartNew()

function Send-DoctorReply {
    param($Reply)
    $json = ConvertTo-Json -InputObject $Reply -Compress -Depth 10
    [Console]::Out.WriteLine('<<LYNCAGENT>>' + $json)
    [Console]::Out.Flush()
}

# Get-DoctorPropertyNames: the property names of an object as PowerShell sees them.
function Get-DoctorPropertyNames {
    param($Object)
    $names = New-Object System.Collections.Generic.List[string]
    if ($null -ne $Object) {
        foreach ($p in @($Object.PSObject.Properties)) { $names.Add([string]$p.Name) }
    }
    return ,$names.ToArray()
}

function Get-DoctorFirst {
    param($Items)
    foreach ($i in @($Items)) {
        if ($null -ne $i) { return $i }
    }
    return $null
}

function Get-DoctorTypeName {
    param($Object)
    if ($null -eq $Object) { return '' }
    return $Object.GetType().FullName
}

function Test-DoctorProperty {
    param($Object, [string]$Name)
    if ($null -eq $Object) { return $false }
    return ($null -ne $Object.PSObject.Properties[$Name])
}

`

// doctorProbes runs every probe and sends the reply.
const doctorProbes = `$facts = @{ doctor = 1 }
$facts['psVersion'] = [string]$PSVersionTable.PSVersion
$facts['psEdition'] = [string]$PSVersionTable.PSEdition
$facts['clrVersion'] = [string]$PSVersionTable.CLRVersion
$facts['is64BitProcess'] = [bool][Environment]::Is64BitProcess
$doctorId = 1
$serverFqdn = ''
$skipped = @{ type = 'Doctor.Skipped'; innerType = ''; message = 'not run: the pool of this server is not known'; detail = ''; category = ''; errorId = '' }

# The request line, read as the backend's hosts read theirs.
$probe = @{ ok = $false; error = $null; line = ''; serverFqdn = '' }
try {
    $line = [Console]::In.ReadLine()
    if ($null -eq $line) { throw 'stdin ended before the request line' }
    $probe['line'] = $line
    $req = ConvertFrom-Json -InputObject $line
    if ($null -ne $req.id) { $doctorId = $req.id }
    $serverFqdn = [string]$req.params.serverFqdn
    $probe['serverFqdn'] = $serverFqdn
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['stdin'] = $probe

$probe = @{ ok = $false; error = $null; name = $doctorModule; version = ''; available = @(); importMs = 0; workingSetMB = 0 }
try {
    $available = @()
    foreach ($m in @(Get-Module -ListAvailable -Name 'Lync', 'SkypeForBusiness')) {
        if ($null -ne $m) { $available += ([string]$m.Name + ' ' + [string]$m.Version) }
    }
    $probe['available'] = $available
} catch { }
$importClock = [Diagnostics.Stopwatch]::StartNew()
try {
    Import-Module -Name $doctorModule -ErrorAction Stop
    $probe['importMs'] = [long]$importClock.ElapsedMilliseconds
    $loaded = Get-DoctorFirst @(Get-Module -Name $doctorModule)
    if ($null -ne $loaded) { $probe['version'] = [string]$loaded.Version }
    $probe['ok'] = $true
} catch {
    $probe['importMs'] = [long]$importClock.ElapsedMilliseconds
    $probe['error'] = (ConvertTo-AgentError $_)
}
try { $probe['workingSetMB'] = [long]([Diagnostics.Process]::GetCurrentProcess().WorkingSet64 / 1048576) } catch { }
$facts['module'] = $probe

$probe = @{ ok = $false; error = $null; text = '' }
try {
    $probe['text'] = ((ConvertTo-AgentStrings (Get-CsServerVersion)) -join ' ')
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['serverVersion'] = $probe

$probe = @{ ok = $false; error = $null; found = $false; identity = ''; fqdn = ''; pool = '' }
try {
    $c = Get-DoctorFirst @(Get-CsComputer -Local)
    if ($null -ne $c) {
        $probe['found'] = $true
        $probe['identity'] = [string]$c.Identity
        $probe['fqdn'] = [string]$c.Fqdn
        $probe['pool'] = [string]$c.Pool
    }
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['localComputer'] = $probe

$probe = @{ ok = $false; error = $null; asked = $serverFqdn; found = $false; identity = ''; fqdn = ''; pool = '' }
if ($serverFqdn -ne '') {
    try {
        $c = Get-DoctorFirst @(Get-CsComputer -Identity $serverFqdn)
        if ($null -ne $c) {
            $probe['found'] = $true
            $probe['identity'] = [string]$c.Identity
            $probe['fqdn'] = [string]$c.Fqdn
            $probe['pool'] = [string]$c.Pool
        }
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['namedComputer'] = $probe

$poolFqdn = ''
if ($facts['namedComputer']['found']) {
    $poolFqdn = [string]$facts['namedComputer']['pool']
} elseif ($facts['localComputer']['found']) {
    $poolFqdn = [string]$facts['localComputer']['pool']
}

$probe = @{ ok = $false; error = $skipped; found = $false; fqdn = ''; site = ''; computers = @(); services = @() }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    try {
        $p = Get-DoctorFirst @(Get-CsPool -Identity $poolFqdn)
        if ($null -ne $p) {
            $probe['found'] = $true
            $probe['fqdn'] = [string]$p.Fqdn
            $probe['site'] = [string]$p.Site
            $probe['computers'] = (ConvertTo-AgentStrings $p.Computers)
            $probe['services'] = (ConvertTo-AgentStrings $p.Services)
        }
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['pool'] = $probe

# The backend's own read of the pool in the published topology document.
$probe = @{ ok = $false; error = $skipped; result = $null }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    $topologyFqdn = $poolFqdn
    if ($facts['pool']['found']) { $topologyFqdn = [string]$facts['pool']['fqdn'] }
    try {
        $probe['result'] = (Get-AgentTopologyFacts $topologyFqdn)
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['topology'] = $probe

$probe = @{ ok = $false; error = $skipped; found = $false; identity = ''; hasBackupRegistrar = $false; backupRegistrar = ''; properties = @() }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    try {
        $r = Get-DoctorFirst @(Get-CsService -Registrar -PoolFqdn $poolFqdn)
        if ($null -ne $r) {
            $probe['found'] = $true
            $probe['identity'] = [string]$r.Identity
            $probe['hasBackupRegistrar'] = (Test-DoctorProperty $r 'BackupRegistrar')
            $probe['backupRegistrar'] = [string]$r.BackupRegistrar
            $probe['properties'] = (Get-DoctorPropertyNames $r)
        }
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['registrar'] = $probe

# The backend's own read of the relationship (it catches the cmdlet's failure itself), and the
# type of what the cmdlet answered.
$probe = @{ ok = $false; error = $skipped; result = $null; type = '' }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    try {
        $probe['result'] = (Get-AgentRelationship $poolFqdn)
        try { $probe['type'] = (Get-DoctorTypeName (Get-DoctorFirst @(Get-CsPoolBackupRelationship -PoolFqdn $poolFqdn))) } catch { }
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['relationship'] = $probe

$probe = @{ ok = $false; error = $skipped; count = 0; type = ''; properties = @(); hasBackupModules = $false; moduleType = ''; moduleProperties = @(); modules = @() }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    try {
        $items = @()
        foreach ($x in @(Get-CsBackupServiceStatus -PoolFqdn $poolFqdn)) {
            if ($null -ne $x) { $items += ,$x }
        }
        $probe['count'] = $items.Count
        $modules = @()
        if ($items.Count -gt 0) {
            $probe['type'] = (Get-DoctorTypeName $items[0])
            $probe['properties'] = (Get-DoctorPropertyNames $items[0])
            $probe['hasBackupModules'] = (Test-DoctorProperty $items[0] 'BackupModules')
        }
        foreach ($status in $items) {
            foreach ($m in @($status.BackupModules)) {
                if ($null -eq $m) { continue }
                if ($probe['moduleType'] -eq '') {
                    $probe['moduleType'] = (Get-DoctorTypeName $m)
                    $probe['moduleProperties'] = (Get-DoctorPropertyNames $m)
                }
                $modules += @{ identity = [string]$m.Identity; exportStatus = [string]$m.ExportStatus; importStatus = [string]$m.ImportStatus }
            }
        }
        $probe['modules'] = $modules
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['backupStatus'] = $probe

$probe = @{ ok = $false; error = $null; found = $false; syncInterval = ''; syncIntervalType = ''; syncIntervalSeconds = 0; castError = $null; properties = @(); identities = @() }
try {
    # Every collection there is (the reference allows only the global one, which the backend reads).
    $identities = @()
    foreach ($x in @(Get-CsBackupServiceConfiguration)) {
        if ($null -ne $x) { $identities += [string]$x.Identity }
    }
    $probe['identities'] = $identities
} catch { }
try {
    $cfg = Get-DoctorFirst @(Get-CsBackupServiceConfiguration -Identity 'global')
    if ($null -ne $cfg) {
        $probe['found'] = $true
        $probe['syncInterval'] = [string]$cfg.SyncInterval
        $probe['syncIntervalType'] = (Get-DoctorTypeName $cfg.SyncInterval)
        try {
            $probe['syncIntervalSeconds'] = [double]([TimeSpan]$cfg.SyncInterval).TotalSeconds
        } catch { $probe['castError'] = (ConvertTo-AgentError $_) }
        $probe['properties'] = (Get-DoctorPropertyNames $cfg)
    }
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['backupConfiguration'] = $probe

$probe = @{ ok = $false; error = $null; found = $false; name = ''; status = ''; properties = @(); byNameError = $null; processId = 0; sharedWith = @(); started = ''; processError = $null }
try {
    $svc = $null
    try {
        $svc = Get-DoctorFirst @(Get-CsWindowsService -Name 'LYNCBACKUP' -ExcludeActivityLevel)
    } catch {
        $probe['byNameError'] = (ConvertTo-AgentError $_)
        $svc = Get-DoctorFirst @(Get-CsWindowsService -ExcludeActivityLevel | Where-Object { $_.Name -eq 'LYNCBACKUP' })
    }
    if ($null -ne $svc) {
        $probe['found'] = $true
        $probe['name'] = [string]$svc.Name
        $probe['status'] = [string]$svc.Status
        $probe['properties'] = (Get-DoctorPropertyNames $svc)
    }
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
# When the running service started, as the backend reads it, and whether its process is its own.
if ($probe['found'] -and $probe['status'] -eq 'Running') {
    try {
        $wmi = Get-DoctorFirst @(Get-WmiObject -Class Win32_Service -Filter "Name='LYNCBACKUP'")
        if ($null -ne $wmi) {
            $procId = [int]$wmi.ProcessId
            $probe['processId'] = $procId
            $shared = @()
            if ($procId -gt 0) {
                foreach ($o in @(Get-WmiObject -Class Win32_Service -Filter ('ProcessId=' + $procId))) {
                    if ($null -ne $o -and [string]$o.Name -ne 'LYNCBACKUP') { $shared += [string]$o.Name }
                }
            }
            $probe['sharedWith'] = $shared
        }
        $probe['started'] = (Get-AgentBackupServiceStarted)
    } catch { $probe['processError'] = (ConvertTo-AgentError $_) }
}
$facts['lyncBackup'] = $probe

$probe = @{ ok = $false; error = $null; services = @() }
try {
    $list = @()
    foreach ($s in @(Get-CsService -CentralManagement)) {
        if ($null -eq $s) { continue }
        $hasActive = (Test-DoctorProperty $s 'Active')
        $active = ''
        if ($hasActive) { $active = [string]$s.Active }
        $list += @{ identity = [string]$s.Identity; poolFqdn = [string]$s.PoolFqdn; hasActive = $hasActive; active = $active; properties = (Get-DoctorPropertyNames $s) }
    }
    $probe['services'] = $list
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['cms'] = $probe

$probe = @{ ok = $false; error = $null; found = $false; activeMasterFqdn = ''; properties = @() }
try {
    $st = Get-DoctorFirst @(Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus)
    if ($null -ne $st) {
        $probe['found'] = $true
        $probe['activeMasterFqdn'] = [string]$st.ActiveMasterFqdn
        $probe['properties'] = (Get-DoctorPropertyNames $st)
    }
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['cmsStatus'] = $probe

# The backend's own reads for failover: the Edge pools and their next hops, whom this pool's
# users sign in to, this pool's back-end store (a disaster failover of the CMS to this pool), and
# the Front End service.
$probe = @{ ok = $false; error = $null; result = $null }
try {
    $probe['result'] = (Get-AgentEdgePools)
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['edgePools'] = $probe

$probe = @{ ok = $false; error = $skipped; result = $null }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    $failoverFqdn = $poolFqdn
    if ($facts['pool']['found']) { $failoverFqdn = [string]$facts['pool']['fqdn'] }
    try {
        $probe['result'] = (Get-AgentFailoverState $failoverFqdn)
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['failoverState'] = $probe

$probe = @{ ok = $false; error = $skipped; result = $null }
if ($poolFqdn -ne '') {
    $probe['error'] = $null
    $storeFqdn = $poolFqdn
    if ($facts['pool']['found']) { $storeFqdn = [string]$facts['pool']['fqdn'] }
    try {
        $probe['result'] = (Get-AgentBackendStore $storeFqdn)
        $probe['ok'] = $true
    } catch { $probe['error'] = (ConvertTo-AgentError $_) }
}
$facts['backendStore'] = $probe

$probe = @{ ok = $false; error = $null; found = $false; status = '' }
try {
    $svc = Get-DoctorFirst @(Get-CsWindowsService -Name 'RTCSRV' -ExcludeActivityLevel)
    if ($null -ne $svc) {
        $probe['found'] = $true
        $probe['status'] = [string]$svc.Status
    }
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['frontEnd'] = $probe

$probe = @{ ok = $false; error = $null; lastBootUpTime = '' }
try {
    $os = Get-DoctorFirst @(Get-WmiObject -Class Win32_OperatingSystem)
    $probe['lastBootUpTime'] = [Management.ManagementDateTimeConverter]::ToDateTime([string]$os.LastBootUpTime).ToUniversalTime().ToString('o')
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['bootTime'] = $probe

$probe = @{ ok = $false; error = $null; name = ''; sid = ''; isAdministrator = $false; groups = @() }
try {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $probe['name'] = [string]$identity.Name
    $probe['sid'] = [string]$identity.User.Value
    $principal = New-Object Security.Principal.WindowsPrincipal -ArgumentList $identity
    $probe['isAdministrator'] = [bool]$principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    $groups = @()
    foreach ($g in @($identity.Groups)) {
        if ($null -eq $g) { continue }
        $name = ''
        try { $name = [string]$g.Translate([Security.Principal.NTAccount]).Value } catch { }
        $groups += @{ sid = [string]$g.Value; name = $name }
    }
    $probe['groups'] = $groups
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['account'] = $probe

$probe = @{ ok = $false; error = $null; computerDn = ''; computerOu = ''; result = ''; resultType = '' }
try {
    $adsi = New-Object -ComObject ADSystemInfo
    $dn = [string]$adsi.GetType().InvokeMember('ComputerName', 'GetProperty', $null, $adsi, $null)
    $probe['computerDn'] = $dn
    $ou = $dn -replace '^(?:\\.|[^,\\])*,', ''
    $probe['computerOu'] = $ou
    $r = @(Test-CsSetupPermission -ComputerOU $ou)
    $probe['result'] = ((ConvertTo-AgentStrings $r) -join ' ')
    $probe['resultType'] = (Get-DoctorTypeName (Get-DoctorFirst $r))
    $probe['ok'] = $true
} catch { $probe['error'] = (ConvertTo-AgentError $_) }
$facts['setupPermission'] = $probe

$facts['elapsedMs'] = [long]$doctorClock.ElapsedMilliseconds
try {
    Send-DoctorReply @{ id = $doctorId; ok = $true; result = $facts }
} catch {
    Send-DoctorReply @{ id = $doctorId; ok = $false; error = (ConvertTo-AgentError $_) }
}
`

// doctorInput is what the doctor writes to PowerShell's stdin before its request line: the
// backend's loader, the backend's prelude, the doctor's helpers, the product's module name, the
// probes, and the backend's sentinel.
func doctorInput(productName string) (string, error) {
	p, err := lookupProduct(productName)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString(loaderScript)
	sb.WriteString("\n")
	sb.WriteString(bodyPrelude)
	sb.WriteString(doctorFunctions)
	sb.WriteString("$doctorModule = '" + p.module + "'\n")
	sb.WriteString(doctorProbes)
	sb.WriteString(bootstrapSentinel)
	sb.WriteString("\n")
	return sb.String(), nil
}
