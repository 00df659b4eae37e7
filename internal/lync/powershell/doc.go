// Package powershell is the real lync.Backend: it drives the Lync Server 2013 / Skype for
// Business Server management shell through two long-lived PowerShell hosts, one for reads and
// one for writes, and runs Bootstrapper.exe directly.
//
// # The hosts
//
// Importing the Lync module costs seconds, so each Backend keeps long-lived powershell.exe
// processes (-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command -), each started
// on its first call and replaced when it dies, times out or fails to start. There are two: the
// read host serves Identity, Pool, BackupStatus, BackupService, FrontEndService and the failover
// steps' reads; the write host PairPools, Unpair, SyncBackup, StartBackupService,
// RestartBackupService and the failover cmdlets. (BootTime asks the OS through
// procs: GetTickCount64 on Windows, /proc/stat's btime elsewhere.) Each host runs one call at a
// time, so a read never
// waits behind a topology write or a forced sync (minutes: past the operator's 5 s read timeout,
// which would show the agent as unreachable), and writes still run one after the other.
// Start-up cost: two processes, each importing the module once (the write host on the first
// write, inside an operation that takes minutes anyway), and the memory of the second one.
// BenchmarkReadsDuringWrite measures read latency during a write with two hosts and with one.
//
// Each host reads, on stdin: a one-line loader, the fixed body script (scripts.go: the product's
// Import-Module, one function per operation, a dispatch table and a read loop), and a sentinel
// line. It then answers id 0 (module loaded, or why not) and serves requests, one JSON line each:
//
//	-> {"id":7,"op":"GetPool","params":{"fqdn":"pool01.contoso.com"}}
//	<- <<LYNCAGENT>>{"id":7,"ok":true,"result":{...}}
//	<- <<LYNCAGENT>>{"id":7,"ok":false,"error":{"type":"...","message":"...","category":"...",...}}
//
// Parameters only ever travel as JSON data (ConvertFrom-Json); no value is spliced into script
// text. A request line is printable ASCII (DEL and non-ASCII escaped); text that is not UTF-8 is
// refused rather than sent changed (FuzzEncodeRequest). Every script is Windows PowerShell 3.0,
// which Lync Server 2013 runs: ps3_test.go fails on what later versions added. Lines without the marker (warnings, banners) are logged at debug and ignored. A caller
// that gives up (ctx) leaves the host running and its late reply is discarded by id; a call that
// exceeds CallTimeout kills the host, which is then in an unknown state.
//
// Replies are checked, not trusted (wire.go). Output in UTF-16 (told by its BOM, or a NUL beside
// an ASCII byte) is read as UTF-8, and a UTF-8 BOM at the start of a line is dropped. A result
// that is null, lacks a key the script always writes, holds null where the script always casts to
// [string], or has a value of the wrong type fails the call naming the key: a missing backup pool
// is never read as "unpaired", nor a null result as "LYNCBACKUP not installed". A reply with a
// usable id but a broken envelope fails its call; a reply line without one (cut short, say) is
// named in the error of the call that then loses its host or times out.
//
// Errors: permission failures wrap lync.ErrPermission, with a hint naming what the step needs
// (PermissionHint: RTCUniversalServerAdmins; PermissionHintService: also local Administrator, to
// stop and start LYNCBACKUP; PermissionHintTopology: setup permissions for Enable-CsTopology,
// Domain Admins or Grant-CsSetupPermission -ComputerOU; PermissionHintBootstrapper: local
// Administrator); unknown pools and computers lync.ErrNotFound; a host that cannot start, load
// its module or answer lync.ErrUnavailable; other cmdlet failures are a *CmdletError carrying the
// cmdlet's message. Get-CsPoolBackupRelationship is caught inside the script: no answer ($null) is
// an unpaired pool; its failure, or an answer without one of RelationshipPoolProperties, is a
// *RelationshipError naming the cmdlet (never lync.ErrNotFound, never "unpaired").
//
// # Where each fact comes from
//
//   - Backup pool: Get-CsPoolBackupRelationship (RelationshipPoolProperties).
//   - Edition: the published topology document (Get-CsTopology -AsXml, read at most once a
//     minute): Standard Edition when the pool's UserStore service is installed on a SQL Server
//     instance of the pool's own cluster. A pool the document lacks falls back to Get-CsPool's
//     services (UserDatabase:<pool fqdn>), with its version unknown (PairPools then refuses).
//   - Version: for this server's own pool, Get-CsServerVersion (ServerVersionProduct); for the
//     others, the ServiceVersion of the pool's Registrar service in the topology document
//     (ServiceVersionProducts).
//   - CMS: Get-CsService -CentralManagement's active entry (Pool.CMSPool, Pool.HostsCMS).
//   - Sync interval: Get-CsBackupServiceConfiguration -Identity global's SyncInterval (the
//     reference: one global collection of settings); 0 when it cannot be read.
//   - LYNCBACKUP's start: Win32_Service's ProcessId, then that process's StartTime.
//
// # Bootstrapper.exe
//
// Its path is DefaultBootstrapperPath (<Program Files>\<product>\Deployment\Bootstrapper.exe, from
// the environment), unless Options.BootstrapperPath (--bootstrapper) says otherwise; not finding it
// names the path tried and the flag. A run is judged by its exit code (0 succeeded; 3010 and 1641,
// Windows Installer's successes that need a restart, succeeded with RebootRequired, as does output
// asking for a restart) and then by its effect: when the topology names a backup pool for this
// server's pool and LYNCBACKUP is not installed, the run has not succeeded, and its LogTail ends
// saying so. After a complete run (succeeded, no restart pending) on Skype for Business Server,
// NextSteps holds the administrator's step 9 of "Deploy paired Front End pools for disaster
// recovery in Skype for Business Server": re-apply the installed cumulative update
// (SkypeServerUpdateInstaller.exe). Lync Server 2013 has no such step.
//
// A run is a process of its own that outlives the agent. Its output goes to a file
// (Options.BootstrapLog), not to a pipe that would break when the agent exits. When the ctx of
// Bootstrap ends (the agent stops), Bootstrap returns and the run goes on; only the per-run
// timeout kills it, with the installers it started. One run per server: Bootstrap fails with
// lync.ErrConflict, and starts nothing, while this process's run goes on or while the OS lists a
// process of the Bootstrapper image (a run an earlier agent started). RunningBootstrap hands such
// a run to the agent, which waits for it; it is judged as Bootstrap judges its own (exit code,
// the log file's tail, then its effect).
//
// The OS part is the procs interface (procs_windows.go, procs_other.go); tests set a fake on the
// bootstrapper. On Windows a run is created suspended (windows.CreateProcess; os/exec cannot),
// put in a Job Object, then resumed, so nothing it starts can escape the job by starting before
// the assignment; a timeout calls TerminateJobObject. The job has no kill-on-close limit, so it
// does not end with the agent. A run of an earlier agent is found with CreateToolhelp32Snapshot
// and Process32First/Next, matched by its full image path (QueryFullProcessImageName), and
// waited on through an OpenProcess(SYNCHRONIZE|PROCESS_QUERY_LIMITED_INFORMATION) handle, which
// also gives its exit code (GetExitCodeProcess). Such an adopted run is never killed: the job
// that reached its installers closed with the agent that started it. Elsewhere (the tests, a
// Linux build) a run is a process group of its own, killed as a group, and a run of an earlier
// agent is found by scanning /proc for the executable's path (none without /proc); only a parent
// can read an exit code there, so waiting for such a run ends in lync.ErrUnavailable (retryable:
// Bootstrapper is safe to run again).
//
// # Unpair
//
// Unpair follows "Front End pool ABC failover procedure in Lync Server 2013": it removes the
// association both ways (the pairing seam below) and enables the topology, then runs
// Remove-CsUserStoreBackupData -PoolFqdn for each of the two pools (step 21), after the
// association is gone, since the reference defines the data it removes as that of a pool no
// longer paired. It does not restart LYNCBACKUP (step 24: RestartBackupService, on every Front End
// server of both pools), run Bootstrapper, nor touch conference content or a standby CMS.
//
// # Failover
//
// failover.go follows "Failing over and failing back a pool": FailoverCMS (on a Front End of the
// surviving pool, which Identity must show) reads where the CMS is from Get-CsManagementStoreReplicationStatus
// -CentralManagementStoreStatus (ActiveMasterFqdn, its pool from Get-CsComputer), refuses a
// target that is not the CMS pool's backup pool, runs Invoke-CsManagementServerFailover with no
// target store while the CMS answers, and in a disaster with -BackupSqlServerFqdn and
// -BackupSqlInstanceName (the surviving pool's back-end store, BackendStore) and -Force; then it
// waits (cmsVerifyTimeout) until the active master is a Front End of the surviving pool.
// MoveEdgeNextHop runs Set-CsEdgeServer -Identity EdgeServer:<edge> -Registrar Registrar:<pool>
// and reads the next hop back. FailoverPool refuses a pool without a backup pool, one that hosts
// the active CMS or an Edge pool's next hop, and any while the CMS does not answer, then runs
// Invoke-CsPoolFailOver [-DisasterMode]; FailbackPool runs Invoke-CsPoolFailBack. Every cmdlet gets
// -Confirm:$false (and -WhatIf for a rehearsal, whose message the backend composes: -WhatIf
// writes to the host, which the agent cannot read); -NonInteractive turns any other prompt into
// an error. Invoke-CsPoolFailOver's documented refusal of an Edge pool's next hop is
// lync.ErrConflict. Invoke-CsPoolFailOver and -FailBack may run for up to two hours, and
// Invoke-CsManagementServerFailover 30 minutes, before the host is stopped (longCalls). Reads:
// Pool.EdgePools from Get-CsService -EdgeServer, Pool.FailedOverTo from Get-CsUserPoolInfo of a
// user homed on the pool (both do not fail the pool's read: what cannot be read is logged and
// left empty), FrontEndService from Get-CsWindowsService -Name RTCSRV.
//
// # UNVERIFIED seams (need a lab check; each is marked in the code)
//
// `lync-agent doctor` (Diagnose, doctor.go) checks, read-only, the ones a server can show; the
// README lists those it cannot.
//
//   - Pairing: PairPools/Unpair use Set-CsRegistrar -BackupRegistrar both ways plus
//     Enable-CsTopology (PairingMechanismVerified = false; Invoke-AgentPairPools/Invoke-AgentUnpair).
//   - Get-CsPoolBackupRelationship: the property that holds the backup pool
//     (RelationshipPoolProperties: BackupPoolFqdn), and that an unpaired pool answers $null or an
//     empty value rather than throwing (a throw is a RelationshipError, so on a server where the
//     cmdlet throws for unpaired pools nothing can be paired until that is known).
//   - The topology document: that Get-CsTopology -AsXml has Topology/Clusters/Cluster[@Fqdn] with
//     ClusterId, and Topology/Services/Service with ServiceId/@RoleName, @ServiceVersion and
//     InstalledOn (ClusterId, or SqlInstanceId/ClusterId) as in the Skype for Business Server 2019
//     documents seen; ServiceVersion 6 for Lync Server 2013 and 5 for 2010
//     (ServiceVersionProducts); and the UserStore rule for Standard Edition on Lync Server 2013.
//   - Get-CsServerVersion: its wording and version numbers beyond the reference's example
//     (ServerVersionProduct).
//   - CMS: Get-CsService -CentralManagement's Active property (cmsPool).
//   - Bootstrapper: reboot-required exit codes 3010/1641 and wording (rebootText), and that a run
//     which sets a pairing up installs LYNCBACKUP.
//   - LYNCBACKUP runs in a process of its own (its process's start time is the service's).
//   - Remove-CsUserStoreBackupData run right after Enable-CsTopology finds the other pool's data
//     outdated (a later Unpair runs it again).
//   - SyncInterval read from the global collection only (the reference allows no other).
//   - Failover state: whom a pool's users sign in to (FailedOverTo: Get-CsUserPoolInfo's
//     PrimaryPoolFqdn for a user homed on the pool, UserPoolServingProperties). No public source
//     documents a read of it; doctor checks the shape (failover-state), only a lab failover can
//     check the meaning.
//   - An Edge pool's next hop in Get-CsService -EdgeServer's property Registrar
//     (EdgeNextHopProperties; doctor: edge-next-hop), and that Set-CsEdgeServer -Registrar alone
//     (no Enable-CsTopology) moves it, as Microsoft's procedure for another site shows.
//   - The surviving pool's back-end store for a disaster CMS failover: its UserServer service's
//     UserDatabase (BackendStore; doctor: backend-store); a mirrored back end whose mirror is the
//     principal is not handled.
//   - That the failover cmdlets do not prompt beyond -Confirm (a ShouldContinue prompt fails under
//     -NonInteractive, changing nothing).
//   - Windows PowerShell reading the request lines with [Console]::In after -Command - read the
//     loader line from the same stdin (tested here only against a fake PowerShell).
//   - Two hosts: the memory and start-up of a second powershell.exe with the module loaded on a
//     Front End, and that the read host's cmdlets answer promptly while the write host runs
//     Enable-CsTopology or Invoke-CsBackupServiceSync (separate processes here; the Central
//     Management Store may serialize on its side).
//   - procs_windows.go as a whole: it compiles (GOOS=windows go vet) but has never run.
//   - Bootstrapper outliving the agent: that a run (CREATE_NEW_PROCESS_GROUP|CREATE_NO_WINDOW, in
//     a job without kill-on-close) survives the agent's service stop (the service control manager
//     does not end a service's children) and a crash of the agent, and that Bootstrapper.exe
//     works with a file as its stdout and stderr. If the agent itself runs in a job with
//     kill-on-close (a wrapper, some service managers), the run dies with the agent.
//   - The Job Object: that Bootstrapper's installers are its descendants and stay in the job
//     (nothing breaks away: the job does not allow it), and that TerminateJobObject at the
//     timeout leaves a server that a second run repairs. Windows Installer installs in its own
//     service (msiexec /V, started by the service control manager, outside the job); killing its
//     client is expected to make it roll back. The race between CreateProcess and
//     AssignProcessToJobObject is closed by creating the process suspended and resuming it only
//     once it is in the job.
//   - Finding a run: that the agent's account can open an earlier agent's Bootstrapper.exe with
//     SYNCHRONIZE|PROCESS_QUERY_LIMITED_INFORMATION, and that QueryFullProcessImageName spells its
//     path as BootstrapperPath does (compared case-insensitively after filepath.Clean; 8.3 short
//     names would not match). A process of that name that cannot be opened makes Bootstrap
//     refuse (lync.ErrUnavailable) rather than risk a second run.
//   - Bootstrapper's exit code read through GetExitCodeProcess by a process that did not start
//     it, and the default log beside the agent's executable being writable by the agent's account.
package powershell
