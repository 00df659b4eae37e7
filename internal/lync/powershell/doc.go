// Package powershell is the real lync.Backend: it drives the Lync Server 2013 / Skype for
// Business Server management shell through two long-lived PowerShell hosts, one for reads and
// one for writes, and runs Bootstrapper.exe directly.
//
// # The hosts
//
// Importing the Lync module costs seconds, so each Backend keeps long-lived powershell.exe
// processes (-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command -), each started
// on its first call and replaced when it dies, times out or fails to start. There are two: the
// read host serves Identity, Pool, BackupStatus and BackupService; the write host PairPools,
// Unpair, SyncBackup and StartBackupService. Each host runs one call at a time, so a read never
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
// text. Lines without the marker (warnings, banners) are logged at debug and ignored. A caller
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
// Errors: permission failures wrap lync.ErrPermission (with PermissionHint), unknown pools and
// computers lync.ErrNotFound, a host that cannot start, load its module or answer
// lync.ErrUnavailable; other cmdlet failures are a *CmdletError carrying the cmdlet's message.
//
// # Bootstrapper.exe
//
// A run is a process of its own that outlives the agent. Its output goes to a file
// (Options.BootstrapLog), not to a pipe that would break when the agent exits. When the ctx of
// Bootstrap ends (the agent stops), Bootstrap returns and the run goes on; only the per-run
// timeout kills it, with the installers it started. One run per server: Bootstrap fails with
// lync.ErrConflict, and starts nothing, while this process's run goes on or while the OS lists a
// process of the Bootstrapper image (a run an earlier agent started). RunningBootstrap hands such
// a run to the agent, which waits for it; it is judged as Bootstrap judges its own (exit code,
// the log file's tail, then the backup pool read from the topology).
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
// # UNVERIFIED seams (need a lab check; each is marked in the code)
//
//   - Pairing: PairPools/Unpair use Set-CsRegistrar -BackupRegistrar both ways plus
//     Enable-CsTopology (PairingMechanismVerified = false; Invoke-AgentPairPools/Invoke-AgentUnpair).
//   - Get-CsPoolBackupRelationship's property name (BackupPoolFqdn) and its answer for an unpaired pool.
//   - Edition: Standard when the pool lists UserDatabase:<pool fqdn> among its services (editionOf).
//   - Version: the Registrar service's Version and its numbering (versionName).
//   - CMS: Get-CsService -CentralManagement's Active property (hostsCMS).
//   - Bootstrapper: reboot-required exit codes 3010/1641 and wording (rebootText).
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
