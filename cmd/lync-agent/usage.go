package main

const usageText = `lync-agent: the poolpair-operator agent for Lync Server 2013 and Skype for Business Server 2015/2019.

It runs on every Front End server of the pools you pair for disaster recovery, and lets the
poolpair-operator (in Kubernetes) read the topology and run a fixed set of steps: pair two pools
(topology publish), run Bootstrapper.exe, start the LYNCBACKUP service, force a backup sync,
unpair. It runs nothing else: there is no way to send it a command or a script. It answers only
over HTTPS to clients presenting a certificate signed by the CA you give it (mutual TLS).

Usage:
  lync-agent serve   [flags]         run the agent in this console (Ctrl+C stops it)
  lync-agent doctor  [serve flags] [--show-values] [--json]
                                     check, read-only, that this server is what the agent assumes
  lync-agent service install [--name lync-agent] [--account DOMAIN\user] -- [serve flags]
                                     install as a Windows service that runs "serve" with those flags
  lync-agent service uninstall|start|stop [--name lync-agent]
  lync-agent certs   --out DIR --hosts NAME[,NAME...] [--client-cn NAME]
                                     make a development CA, server and client certificate
  lync-agent sim     --deployment FILE --tls-dir DIR [flags]
                                     serve a simulated deployment (demos and tests; no Lync needed)
  lync-agent simctl  --admin URL --tls-dir DIR <command>
                                     inject faults into a running sim
  lync-agent --version | --help
  lync-agent <command> --help        the flags of one command

Example: install on a Lync Server 2013 Front End server (PowerShell, as Administrator). First run
"lync-agent doctor" with the serve flags below, as the service's account: every FAIL line says
what to fix.
  .\lync-agent.exe service install --account CONTOSO\svc-lyncagent -- ` + "`" + `
      --listen :9443 --product lync2013 ` + "`" + `
      --tls-cert C:\lync-agent\tls\server.crt --tls-key C:\lync-agent\tls\server.key ` + "`" + `
      --client-ca C:\lync-agent\tls\ca.crt --allowed-clients poolpair-operator
  .\lync-agent.exe service start
  New-NetFirewallRule -DisplayName "lync-agent" -Direction Inbound -Protocol TCP -LocalPort 9443 ` + "`" + `
      -RemoteAddress 10.20.0.0/24 -Action Allow    # the operator's cluster addresses only
The service account's password is read from the LYNC_AGENT_PASSWORD environment variable at install
(not needed for a group managed service account, DOMAIN\name$). Logs go to the Windows Event Log
(Application log, source "lync-agent"); the operation journal to a "journal" folder next to the
executable.

What it needs:
  - Network: inbound TCP 9443 (or your --listen port) from the operator's cluster only.
  - Rights: the account it runs as must be a member of RTCUniversalServerAdmins (topology,
    backup-service and Get-Cs* cmdlets; a missing membership shows as a permission error) and a
    local Administrator of the server (Bootstrapper.exe, Start-CsWindowsService).
  - Certificates: a server certificate with the Server Authentication usage whose DNS names
    include this server's FQDN (the operator reaches https://<server fqdn>:9443), and the CA that
    signs the operator's client certificate (Client Authentication usage; its name goes in
    --allowed-clients). For a lab, "lync-agent certs" makes all three; use your own PKI in
    production.

serve flags (also accepted as keys of a YAML file given with --config; flags win):
  --listen ADDR            address to listen on (default :9443)
  --tls-cert FILE          server certificate (PEM)
  --tls-key FILE           server private key (PEM)
  --client-ca FILE         CA certificate(s) that sign allowed clients (PEM)
  --allowed-clients LIST   comma-separated client certificate names (Subject CN or DNS name)
                           let in (required: the operator's, e.g. poolpair-operator)
  --backend NAME           powershell (the real Lync Management Shell; default) or sim
  --product NAME           lync2013 (default), sfb2015 or sfb2019
  --journal DIR            where operations are recorded (default: "journal" next to the
                           executable on Windows, ./journal elsewhere)
  --powershell FILE        PowerShell executable (default: Windows PowerShell)
  --bootstrapper FILE      Bootstrapper.exe (default: the product's Deployment folder)
  --server FQDN            this server's FQDN as the topology names it (default: detected);
                           with --backend sim: which server of the deployment this agent is
  --deployment FILE        with --backend sim: the simulated deployment file
  --log-level LEVEL        debug, info (default), warn or error
  --config FILE            YAML file with any of the keys above
`
