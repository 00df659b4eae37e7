// Package powershell is the real lync.Backend: it drives the Lync Server 2013 / Skype for
// Business Server management shell through one long-lived PowerShell host, and runs
// Bootstrapper.exe directly.
//
// # The host
//
// Importing the Lync module costs seconds, so each Backend keeps one powershell.exe
// (-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command -), started on the first
// call and replaced when it dies, times out or fails to start. Calls run one at a time.
//
// The host reads, on stdin: a one-line loader, the fixed body script (scripts.go: the product's
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
// Errors: permission failures wrap lync.ErrPermission (with PermissionHint), unknown pools and
// computers lync.ErrNotFound, a host that cannot start, load its module or answer
// lync.ErrUnavailable; other cmdlet failures are a *CmdletError carrying the cmdlet's message.
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
package powershell
