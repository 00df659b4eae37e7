package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The doc comments of the API types below are one line per paragraph: controller-gen copies them
// into the CRD's field descriptions line by line, and kubectl explain wraps each line itself, so a
// line break inside a sentence would show as one. Each spec field says its default, unit and range.
//
// Refusals name the field and give an example, never a regular expression: strings are checked by
// CEL rules with messages rather than schema patterns. The duration fields are int-or-string in the
// schema (Schemaless, XIntOrString; the Go type stays metav1.Duration) so that a bare number is
// refused by a rule that says a unit is needed, instead of a type error that skips every rule.
// Each has three rules: a string, the duration syntax, the range. The range rule converts only
// values that also match its second pattern (parts of fewer than 1e9ms, 1e6s, 1e5m or 1e4h, at
// most 32 of them within MaxLength 64), so duration() cannot overflow and no conversion error is
// ever shown; a value with a larger part is above 168h, the largest maximum, and out of range.

// Finalizer holds a PoolPair until its deletion policy has been carried out.
const Finalizer = "dr.lync.io/finalizer"

// RequestedAtAnnotation asks for a reconcile (and a retry of a stalled step) now, without editing
// the spec: set it to any new value, for example the current time. The value handled last is
// reported in status.lastHandledReconcileAt.
const RequestedAtAnnotation = "dr.lync.io/requested-at"

// AgentTLSSecretLabel must be set to "true" on a Secret referenced by spec.agent.tlsSecretRef: the
// manager only watches and reads Secrets carrying it.
const AgentTLSSecretLabel = "dr.lync.io/agent-tls"

// DeletionPolicy says what deleting a PoolPair does to the Lync topology.
// +kubebuilder:validation:Enum=Retain;Unpair
type DeletionPolicy string

const (
	// DeletionPolicyRetain leaves the pools paired in the topology; only the resource goes away.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyUnpair removes the backup association between the pools before the resource goes.
	DeletionPolicyUnpair DeletionPolicy = "Unpair"
)

// Phase is the last milestone a PoolPair reached, in order, recomputed from what was observed.
// +kubebuilder:validation:Enum=Pending;TopologyPublished;Bootstrapped;BackupServiceStarted;Synced;FailingOver;FailedOver;FailingBack;Deleting
type Phase string

const (
	PhasePending              Phase = "Pending"
	PhaseTopologyPublished    Phase = "TopologyPublished"
	PhaseBootstrapped         Phase = "Bootstrapped"
	PhaseBackupServiceStarted Phase = "BackupServiceStarted"
	PhaseSynced               Phase = "Synced"
	// PhaseFailingOver, PhaseFailedOver and PhaseFailingBack: spec.failover (Planned or Disaster)
	// is being carried out, has been, or is being undone. A rehearsal keeps the pairing's phase.
	PhaseFailingOver Phase = "FailingOver"
	PhaseFailedOver  Phase = "FailedOver"
	PhaseFailingBack Phase = "FailingBack"
	PhaseDeleting    Phase = "Deleting"
)

// Condition types. Ready is always present; Reconciling and Stalled only while True (kstatus).
const (
	ConditionReady                = "Ready"
	ConditionReconciling          = "Reconciling"
	ConditionStalled              = "Stalled"
	ConditionTopologyPublished    = "TopologyPublished"
	ConditionBootstrapped         = "Bootstrapped"
	ConditionBackupServiceRunning = "BackupServiceRunning"
	ConditionBackupSynced         = "BackupSynced"
	ConditionAgentsReachable      = "AgentsReachable"
	// ConditionFailedOver is present while a failover is declared or carried out: True once the
	// failed pool's users are served by its partner, as declared.
	ConditionFailedOver = "FailedOver"
)

// PoolPair pairs two Lync Server Front End pools so that each backs up the other for disaster recovery: the backup association is published in the topology, every Front End server of both pools is bootstrapped, the Lync Backup Service (LYNCBACKUP) runs, and backup data is synchronized in both directions. Failover and failback stay manual (Invoke-CsPoolFailOver, Invoke-CsPoolFailBack).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pp,categories=lync
// +kubebuilder:printcolumn:name="Primary",type=string,JSONPath=`.spec.primary.fqdn`
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.spec.backup.fqdn`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Serving",type=string,JSONPath=`.status.failover.serving`
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Step",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Reconciling")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type PoolPair struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec PoolPairSpec `json:"spec"`
	// +optional
	Status PoolPairStatus `json:"status,omitempty"`
}

// PoolPairSpec says which two Front End pools back each other up, and how the operator pairs them.
// +kubebuilder:validation:XValidation:rule="!has(self.voiceFailover) || !has(self.topology) || !has(self.topology.publishedBy) || self.topology.publishedBy != 'Administrator'",message="spec.voiceFailover is written with the pairing: with spec.topology.publishedBy Administrator, set 'Automatic failover and failback for Voice' in Topology Builder instead, and leave spec.voiceFailover out"
// +kubebuilder:validation:XValidation:rule="!has(self.topology) || !has(self.topology.publishedBy) || self.topology.publishedBy != 'Administrator' || !has(self.deletionPolicy) || self.deletionPolicy != 'Unpair'",message="spec.deletionPolicy Unpair writes the topology: with spec.topology.publishedBy Administrator the operator never does, so use Retain and remove the association in Topology Builder"
// +kubebuilder:validation:XValidation:rule="self.primary.fqdn != self.backup.fqdn",message="spec.backup.fqdn must differ from spec.primary.fqdn: a pool cannot back itself up"
// +kubebuilder:validation:XValidation:rule="!has(self.failover) || self.failover.pool == self.primary.fqdn || self.failover.pool == self.backup.fqdn",message="spec.failover.pool must be spec.primary.fqdn or spec.backup.fqdn: the pool whose users move to its partner"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.failover) || !has(self.failover) || self.failover.pool == oldSelf.failover.pool",message="spec.failover.pool cannot switch to the other pool in one edit: remove spec.failover first (the users fail back), then fail the other pool over, as Lync requires"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.failover) || oldSelf.failover.mode == 'Rehearsal' || !has(self.failover) || self.failover.mode != 'Rehearsal'",message="spec.failover.mode cannot become Rehearsal once users were failed over: remove spec.failover to fail back first"
// +kubebuilder:validation:XValidation:rule="!has(self.failover) || !has(self.topology) || !has(self.topology.publishedBy) || self.topology.publishedBy != 'Administrator' || self.failover.mode == 'Rehearsal'",message="spec.failover needs spec.topology.publishedBy Operator: with Administrator the operator writes nothing to Lync; fail over with Invoke-CsPoolFailOver yourself"
// +kubebuilder:validation:XValidation:rule="!has(self.primary.servers) || !has(self.backup.servers) || !self.primary.servers.exists(s, self.backup.servers.exists(t, t.fqdn == s.fqdn))",message="a Front End server cannot be listed in both spec.primary.servers and spec.backup.servers"
type PoolPairSpec struct {
	// Primary is one of the two pools. "Primary" only names a side: the pairing is reciprocal, each pool backs up the other. Required.
	// +required
	Primary PoolSpec `json:"primary"`

	// Backup is the other pool. Required; its fqdn must differ from primary.fqdn, and no Front End server may be listed in both pools.
	// +required
	Backup PoolSpec `json:"backup"`

	// Topology says who writes the backup association into the Lync topology: the operator, or the administrator in Topology Builder. Default: publishedBy Operator.
	// +optional
	// +kubebuilder:default={}
	Topology TopologySpec `json:"topology,omitempty"`

	// VoiceFailover sets automatic failover and failback for voice (the registrar's -EnableAutomaticFailover), written with the pairing. Default (left out): enabled, with Lync's default intervals, 2m to fail over and 10m to fail back, as Microsoft's procedure selects it; enabled: false keeps it off. It does not make pool failover automatic: that always stays an administrator's decision. Leave it out when topology.publishedBy is Administrator: the administrator sets it in Topology Builder then.
	// +optional
	VoiceFailover *VoiceFailoverSpec `json:"voiceFailover,omitempty"`

	// Bootstrap controls how Bootstrapper.exe is run on the Front End servers.
	// +optional
	// +kubebuilder:default={}
	Bootstrap BootstrapSpec `json:"bootstrap,omitempty"`

	// Agent says how the operator reaches the lync-agent on the pools and servers.
	// +optional
	// +kubebuilder:default={}
	Agent AgentSpec `json:"agent,omitempty"`

	// Sync controls how backup synchronization is forced and checked.
	// +optional
	// +kubebuilder:default={}
	Sync SyncSpec `json:"sync,omitempty"`

	// DeletionPolicy says what deleting this PoolPair does: Retain leaves the pools paired in the topology; Unpair removes the backup association first (refused when topology.publishedBy is Administrator). Default: Retain.
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// Failover declares that the users of one pool of the pair are served by its partner: the administrator's decision, one reviewable line. The operator then runs Microsoft's procedure in order on a Front End of the surviving pool, each step once: it fails the Central Management store over first when the failed pool hosts it, moves (or names) Edge pools whose next hop is the failed pool, then runs Invoke-CsPoolFailOver. Removing it fails the users back (Invoke-CsPoolFailBack). It cannot switch to the other pool in one edit. Default: none (nothing fails over by itself).
	// +optional
	Failover *FailoverSpec `json:"failover,omitempty"`

	// Suspend pauses the operator for this pair: nothing is observed or started until it is false again. An operation already running on an agent finishes there. Default: false.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// PoolSpec names a Front End pool and, optionally, its agents.
type PoolSpec struct {
	// FQDN is the pool's fully qualified domain name as in the topology, such as pool01.contoso.com: a lower-case DNS name (RFC 1123) of 3 to 253 characters, with letters a-z, digits and hyphens in two or more labels separated by dots. Required. It cannot be changed once set: pair different pools with a new PoolPair.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$')`,message=`must be a lower-case DNS name such as pool01.contoso.com: letters a-z, digits and hyphens, in two or more labels separated by dots, each label 1 to 63 characters that neither starts nor ends with a hyphen`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="the pool FQDN is immutable: create a new PoolPair to pair other pools"
	FQDN string `json:"fqdn"`

	// AgentEndpoint is a discovery address: an https URL that reaches the lync-agent of some Front End server of the pool (typically the pool's DNS name, which resolves to any of them), such as https://pool01.contoso.com:9443; a host name or IP address and an optional port, no path, at most 512 characters. It is used only to read the topology when no server of the pool answers at its own endpoint; every operation runs on a Front End server reached at that server's endpoint, after the agent there has said which server it is. Default: https://<fqdn>:<spec.agent.port>.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^https://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?$')`,message=`must be an https URL such as https://pool01.contoso.com:9443: https://, a host name or IP address ([::1] for IPv6), an optional port, and no path or query`
	AgentEndpoint string `json:"agentEndpoint,omitempty"`

	// Servers are the pool's Front End servers, at most 16. Default: the computers the topology lists for the pool. List them to give each server's agent endpoint, or to work on a subset while a server is being rebuilt.
	// +optional
	// +listType=map
	// +listMapKey=fqdn
	// +kubebuilder:validation:MaxItems=16
	Servers []ServerSpec `json:"servers,omitempty"`
}

// ServerSpec names one Front End server.
type ServerSpec struct {
	// FQDN is the server's fully qualified domain name, such as fe01.pool01.contoso.com: a lower-case DNS name (RFC 1123) of 3 to 253 characters. Required.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$')`,message=`must be a lower-case DNS name such as fe01.pool01.contoso.com: letters a-z, digits and hyphens, in two or more labels separated by dots, each label 1 to 63 characters that neither starts nor ends with a hyphen`
	FQDN string `json:"fqdn"`

	// AgentEndpoint is the https URL of the server's lync-agent, such as https://fe01.pool01.contoso.com:9443; a host name or IP address and an optional port, no path, at most 512 characters. Default: https://<fqdn>:<spec.agent.port>.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^https://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?$')`,message=`must be an https URL such as https://fe01.pool01.contoso.com:9443: https://, a host name or IP address ([::1] for IPv6), an optional port, and no path or query`
	AgentEndpoint string `json:"agentEndpoint,omitempty"`
}

// TopologyPublisher says who publishes the backup association.
// +kubebuilder:validation:Enum=Operator;Administrator
type TopologyPublisher string

const (
	// TopologyPublishedByOperator: the operator writes the association both ways and publishes
	// and enables the topology (PairPools), one topology write at a time per Central Management
	// Store.
	TopologyPublishedByOperator TopologyPublisher = "Operator"
	// TopologyPublishedByAdministrator: the operator never writes the topology. It waits until the
	// administrator has set each pool's "Associated backup pool" in Topology Builder and published,
	// and takes over from Bootstrapper on.
	TopologyPublishedByAdministrator TopologyPublisher = "Administrator"
)

// TopologySpec says who writes the pairing into the topology.
type TopologySpec struct {
	// PublishedBy is Operator (the operator publishes the association) or Administrator (the administrator does, in Topology Builder; the operator checks for it at least every minute, then bootstraps, starts the backup service and syncs). Default: Operator.
	// +optional
	// +kubebuilder:default=Operator
	PublishedBy TopologyPublisher `json:"publishedBy,omitempty"`
}

// FailoverMode says how a failover is carried out.
// +kubebuilder:validation:Enum=Planned;Disaster;Rehearsal
type FailoverMode string

const (
	// FailoverPlanned: both pools answer and the pair is Synced; no data is lost.
	FailoverPlanned FailoverMode = "Planned"
	// FailoverDisaster: the failed pool does not answer (Invoke-CsPoolFailOver -DisasterMode; the
	// Central Management store with -Force). Allowed with a stale backup: status says how stale.
	FailoverDisaster FailoverMode = "Disaster"
	// FailoverRehearsal moves no user: every guard and read-only check runs, and the failover
	// cmdlets run with -WhatIf; status says what a real failover would do and how long it took.
	FailoverRehearsal FailoverMode = "Rehearsal"
)

// FailoverSpec says which pool's users are failed over to its partner, and how.
type FailoverSpec struct {
	// Pool is the pool whose users move to its partner (the failed pool): spec.primary.fqdn or spec.backup.fqdn. Required.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Pool string `json:"pool"`

	// Mode is Planned (both pools answer and the pair is Synced), Disaster (the failed pool does not answer: -DisasterMode, allowed with a stale backup) or Rehearsal (nothing moves: the guards, the reads and the cmdlets with -WhatIf). Required.
	// +required
	Mode FailoverMode `json:"mode"`

	// MoveEdgeNextHop lets the operator point Edge pools whose next hop is the failed pool at the surviving pool (Set-CsEdgeServer -Registrar) before the failover. Default: false: the operator names them with the command to run, and waits until it is done.
	// +optional
	MoveEdgeNextHop bool `json:"moveEdgeNextHop,omitempty"`
}

// FailoverPhase is where a declared failover stands.
type FailoverPhase string

const (
	FailoverPhaseRehearsing     FailoverPhase = "Rehearsing"
	FailoverPhaseRehearsed      FailoverPhase = "Rehearsed"
	FailoverPhaseFailingOver    FailoverPhase = "FailingOver"
	FailoverPhaseFailedOver     FailoverPhase = "FailedOver"
	FailoverPhaseFailingBack    FailoverPhase = "FailingBack"
	FailoverPhaseFailedBack     FailoverPhase = "FailedBack"
	FailoverPhaseRefused        FailoverPhase = "Refused"
	FailoverPhaseOutcomeUnknown FailoverPhase = "OutcomeUnknown"
)

// Failover step names, in Microsoft's order.
const (
	FailoverStepCMS      = "CentralManagementStore"
	FailoverStepEdge     = "EdgeNextHop"
	FailoverStepPool     = "PoolFailover"
	FailoverStepFailback = "PoolFailback"
)

// FailoverStepStatus is one step of a failover or failback.
type FailoverStepStatus struct {
	// Name is CentralManagementStore, EdgeNextHop, PoolFailover or PoolFailback.
	Name string `json:"name"`
	// State is Pending, Running, Succeeded (its effect verified; for a rehearsal, the -WhatIf run succeeded), Skipped (nothing to do, with why) or Failed.
	State string `json:"state"`
	// Message says what the step did, found or would do.
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
	// +optional
	Finished *metav1.Time `json:"finished,omitempty"`
}

// FailoverStatus is the last failover, rehearsal or failback the operator carried out or is carrying out.
type FailoverStatus struct {
	// Pool is the failed pool; SurvivingPool serves its users.
	Pool          string `json:"pool"`
	SurvivingPool string `json:"survivingPool"`
	// Mode is the declared mode.
	Mode FailoverMode `json:"mode"`
	// Phase: Rehearsing, Rehearsed, FailingOver, FailedOver, FailingBack, FailedBack, Refused (a guard refused: see the Stalled condition) or OutcomeUnknown (a failover cmdlet may or may not have run: see the Stalled condition).
	Phase FailoverPhase `json:"phase"`
	// Message says why the failover was refused, or what a rehearsal found.
	// +optional
	Message string `json:"message,omitempty"`
	// Generation is the PoolPair generation whose spec.failover was last judged: a refused failover is judged again when the spec changes, or with the requested-at annotation.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// Serving says who serves the failed pool's users, as last observed, such as "pool01.contoso.com users on pool02.contoso.com".
	// +optional
	Serving string `json:"serving,omitempty"`
	// DeclaredTime is when the operator first saw the declaration (or, failing back, its removal).
	DeclaredTime metav1.Time `json:"declaredTime"`
	// CompletedTime is when the failover (or failback, or rehearsal) was verified.
	// +optional
	CompletedTime *metav1.Time `json:"completedTime,omitempty"`
	// RecoveryTime is from the declaration to the verified failover (for a rehearsal: the time its steps took), compared in the Ready message with Microsoft's targets (Lync Server 2013: 30m; Skype for Business Server: 15-20m).
	// +optional
	RecoveryTime *metav1.Duration `json:"recoveryTime,omitempty"`
	// DataLossWindow is how long before the declaration both backup directions were last healthy: the user data changed in that window may not be on the surviving pool. Zero when both were healthy; absent when unknown.
	// +optional
	DataLossWindow *metav1.Duration `json:"dataLossWindow,omitempty"`
	// CMSPool is the pool that hosts the active Central Management store, as last observed.
	// +optional
	CMSPool string `json:"cmsPool,omitempty"`
	// EdgeCommands are the commands that move Edge pools' next hop off the failed pool, when the operator does not run them (spec.failover.moveEdgeNextHop false).
	// +optional
	EdgeCommands []string `json:"edgeCommands,omitempty"`
	// Steps are the procedure's steps, in order.
	// +optional
	Steps []FailoverStepStatus `json:"steps,omitempty"`
	// Operation is the failover step in flight, run on a Front End of the surviving pool.
	// +optional
	Operation *OperationStatus `json:"operation,omitempty"`
	// LastOperation is the last failover step that finished.
	// +optional
	LastOperation *OperationStatus `json:"lastOperation,omitempty"`
	// FailedAttempts counts failures of failover steps. A failover cmdlet is never retried on its own: a failure stalls the pair until the requested-at annotation asks again.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// LastFailureTime is when a failover step last failed.
	// +optional
	LastFailureTime *metav1.MicroTime `json:"lastFailureTime,omitempty"`
}

// Lync's defaults for the voice failover detection intervals (Set-CsRegistrar): used when
// spec.voiceFailover leaves them out.
const (
	DefaultVoiceFailureDetectionInterval  = 120 * time.Second
	DefaultVoiceFailbackDetectionInterval = 600 * time.Second
)

// VoiceFailoverSpec are the voice resiliency settings written with the pairing.
type VoiceFailoverSpec struct {
	// Enabled turns on automatic failover and failback for voice. Default: true.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// FailureDetectionInterval is how long the primary registrar must be unreachable before voice fails over. Default: 2m, Lync's. A duration string such as 30s, 2m or 1h; 30s to 24h, in whole seconds (a fraction of a second is dropped).
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`type(self) == string`,message=`spec.voiceFailover.failureDetectionInterval must be a duration string such as "2m" (a number needs a unit: s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$')`,message=`spec.voiceFailover.failureDetectionInterval must be a duration such as 30s, 2m or 1h30m (each number followed by a unit: ms, s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || !self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$') || self.matches(r'^(0*([0-9]{1,9}(\.[0-9]+)?ms|[0-9]{1,6}(\.[0-9]+)?s|[0-9]{1,5}(\.[0-9]+)?m|[0-9]{1,4}(\.[0-9]+)?h))+$') && duration(self) >= duration('30s') && duration(self) <= duration('24h')`,message=`spec.voiceFailover.failureDetectionInterval must be between 30s and 24h`
	FailureDetectionInterval *metav1.Duration `json:"failureDetectionInterval,omitempty"`

	// FailbackDetectionInterval is how long the primary registrar must be healthy again before voice fails back. Default: 10m, Lync's. A duration string such as 30s, 10m or 1h; 30s to 24h, in whole seconds (a fraction of a second is dropped).
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`type(self) == string`,message=`spec.voiceFailover.failbackDetectionInterval must be a duration string such as "10m" (a number needs a unit: s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$')`,message=`spec.voiceFailover.failbackDetectionInterval must be a duration such as 30s, 10m or 1h30m (each number followed by a unit: ms, s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || !self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$') || self.matches(r'^(0*([0-9]{1,9}(\.[0-9]+)?ms|[0-9]{1,6}(\.[0-9]+)?s|[0-9]{1,5}(\.[0-9]+)?m|[0-9]{1,4}(\.[0-9]+)?h))+$') && duration(self) >= duration('30s') && duration(self) <= duration('24h')`,message=`spec.voiceFailover.failbackDetectionInterval must be between 30s and 24h`
	FailbackDetectionInterval *metav1.Duration `json:"failbackDetectionInterval,omitempty"`
}

// BootstrapSpec controls Bootstrapper.exe runs.
type BootstrapSpec struct {
	// MaxParallelPerPool is how many Front End servers of one pool are bootstrapped at once; the two pools are bootstrapped in parallel. Keep it low: a bootstrapping server serves no users. Default: 1. 1 to 16.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	MaxParallelPerPool int32 `json:"maxParallelPerPool,omitempty"`
}

// AgentSpec says how to reach and authenticate to the lync-agents.
type AgentSpec struct {
	// Port is the agents' HTTPS port, used where an endpoint is not given. Default: 9443. 1 to 65535.
	// +optional
	// +kubebuilder:default=9443
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// TLSSecretRef names a Secret in this PoolPair's namespace with the client certificate to present to the agents (tls.crt, tls.key) and the CA that signed the agents' certificates (ca.crt). The Secret must be labelled dr.lync.io/agent-tls: "true". Default: the manager's own client certificate (its --agent-tls-dir).
	// +optional
	TLSSecretRef *SecretReference `json:"tlsSecretRef,omitempty"`
}

// SecretReference names a Secret in the same namespace.
type SecretReference struct {
	// Name of the Secret, such as lync-agent-client: 1 to 253 characters, lower-case letters, digits, hyphens and dots. Required.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message=`must be a Secret name such as lync-agent-client: lower-case letters a-z, digits, hyphens and dots, starting and ending with a letter or digit`
	Name string `json:"name"`
}

// SyncSpec controls the backup synchronization checks.
type SyncSpec struct {
	// StableFor is how long both directions must stay healthy before the pair counts as synced: a state only counts as stable once it has held over a sync. Default: twice the longest sync interval the pools report in status.backup[].syncInterval (Get-CsBackupServiceConfiguration), or 4m (twice Lync's default of 2m) while none is known. A duration string such as 30s, 4m or 1h; 0s to 24h.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`type(self) == string`,message=`spec.sync.stableFor must be a duration string such as "4m" (a number needs a unit: s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$')`,message=`spec.sync.stableFor must be a duration such as 30s, 4m or 1h30m (each number followed by a unit: ms, s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || !self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$') || self.matches(r'^(0*([0-9]{1,9}(\.[0-9]+)?ms|[0-9]{1,6}(\.[0-9]+)?s|[0-9]{1,5}(\.[0-9]+)?m|[0-9]{1,4}(\.[0-9]+)?h))+$') && duration(self) >= duration('0s') && duration(self) <= duration('24h')`,message=`spec.sync.stableFor must be between 0s and 24h`
	StableFor *metav1.Duration `json:"stableFor,omitempty"`

	// CheckInterval is how often a synced or stalled pair is observed again, to catch drift, and the least time between two forced syncs of a direction that is not healthy. Default: 5m. A duration string such as 30s, 5m or 1h; 10s to 24h.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`type(self) == string`,message=`spec.sync.checkInterval must be a duration string such as "5m" (a number needs a unit: s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$')`,message=`spec.sync.checkInterval must be a duration such as 30s, 5m or 1h30m (each number followed by a unit: ms, s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || !self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$') || self.matches(r'^(0*([0-9]{1,9}(\.[0-9]+)?ms|[0-9]{1,6}(\.[0-9]+)?s|[0-9]{1,5}(\.[0-9]+)?m|[0-9]{1,4}(\.[0-9]+)?h))+$') && duration(self) >= duration('10s') && duration(self) <= duration('24h')`,message=`spec.sync.checkInterval must be between 10s and 24h`
	CheckInterval *metav1.Duration `json:"checkInterval,omitempty"`

	// Timeout is how long a direction may stay unhealthy while the backup service runs before the pair is reported stalled (reason SyncTimeout); forced syncs go on. Default: 2h. A duration string such as 30m, 2h or 24h; 1m to 168h.
	// +optional
	// +kubebuilder:default="2h"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`type(self) == string`,message=`spec.sync.timeout must be a duration string such as "2h" (a number needs a unit: s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$')`,message=`spec.sync.timeout must be a duration such as 30s, 2h or 1h30m (each number followed by a unit: ms, s, m or h)`
	// +kubebuilder:validation:XValidation:rule=`type(self) != string || !self.matches(r'^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$') || self.matches(r'^(0*([0-9]{1,9}(\.[0-9]+)?ms|[0-9]{1,6}(\.[0-9]+)?s|[0-9]{1,5}(\.[0-9]+)?m|[0-9]{1,4}(\.[0-9]+)?h))+$') && duration(self) >= duration('1m') && duration(self) <= duration('168h')`,message=`spec.sync.timeout must be between 1m and 168h`
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// PoolPairStatus is what the operator observed and what it is doing. Everything but the operation in flight and the retry counters is recomputed from observation on every pass.
type PoolPairStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase is the last milestone reached, in order: Pending, TopologyPublished, Bootstrapped, BackupServiceStarted, Synced; Deleting while the deletion policy is carried out. It goes back when the deployment goes back (a stopped backup service drops Synced to Bootstrapped).
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// Conditions: Ready (always), Reconciling and Stalled (only while True), TopologyPublished, Bootstrapped, BackupServiceRunning, BackupSynced, AgentsReachable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Servers are the Front End servers of both pools as last observed.
	// +optional
	// +listType=map
	// +listMapKey=fqdn
	Servers []ServerStatus `json:"servers,omitempty"`

	// Backup is the backup synchronization state per direction.
	// +optional
	// +listType=map
	// +listMapKey=from
	Backup []BackupDirectionStatus `json:"backup,omitempty"`

	// LastSyncTime is when the operator's last forced backup sync (Invoke-CsBackupServiceSync) finished, in either direction: the newest of backup[].lastSyncTime. The operator forces a sync while pairing and when a direction turns unhealthy; in between, the Backup Service syncs on its own every sync interval, and backup[].healthy says whether it keeps up.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// Operation is the topology write in flight (PairPools, Unpair), run on one Front End of a pool; per-server steps are in servers[], forced syncs in backup[].
	// +optional
	Operation *OperationStatus `json:"operation,omitempty"`

	// LastOperation is the last topology write that finished.
	// +optional
	LastOperation *OperationStatus `json:"lastOperation,omitempty"`

	// FailedAttempts counts consecutive failures of the topology write (a success whose effect was not observed counts too); it sets the retry backoff and survives a manager restart. Reset when the effect is observed, or by the requested-at annotation.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`

	// LastFailureTime is when the topology write last failed.
	// +optional
	LastFailureTime *metav1.MicroTime `json:"lastFailureTime,omitempty"`

	// LastHandledReconcileAt is the value of the dr.lync.io/requested-at annotation last handled.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`

	// Failover is the last failover, rehearsal or failback declared with spec.failover.
	// +optional
	Failover *FailoverStatus `json:"failover,omitempty"`

	// NextSteps are documented steps of the procedure that are the administrator's, never the operator's (re-applying a cumulative update after Bootstrapper on Skype for Business Server, installing the standby Central Management database on a Standard Edition server), each with the command to run.
	// +optional
	NextSteps []string `json:"nextSteps,omitempty"`
}

// ServerStatus is one Front End server as last observed.
type ServerStatus struct {
	// FQDN of the server.
	FQDN string `json:"fqdn"`
	// Pool the server belongs to.
	Pool string `json:"pool"`
	// Reachable is false when the server's agent did not answer on the last pass.
	Reachable bool `json:"reachable"`
	// Bootstrapped is true when Bootstrapper.exe succeeded on the server after the pairing was published and the backup service is installed.
	Bootstrapped bool `json:"bootstrapped"`
	// BackupService is the LYNCBACKUP service state: NotInstalled, Stopped, StartPending, Running...
	// +optional
	BackupService string `json:"backupService,omitempty"`
	// LastBootstrapTime is when Bootstrapper.exe last finished on the server.
	// +optional
	LastBootstrapTime *metav1.Time `json:"lastBootstrapTime,omitempty"`
	// RebootRequired is true while Bootstrapper.exe has asked for a restart of the server that has not happened yet. The operator never restarts a server: the administrator does, and Bootstrapper then runs again.
	// +optional
	RebootRequired bool `json:"rebootRequired,omitempty"`
	// BackupServiceStarted is when the running LYNCBACKUP started. A service that started before the server was bootstrapped for the current pairing still serves the old partner and is restarted.
	// +optional
	BackupServiceStarted *metav1.Time `json:"backupServiceStarted,omitempty"`
	// Operation is the step in flight on this server.
	// +optional
	Operation *OperationStatus `json:"operation,omitempty"`
	// LastOperation is the last step that finished on this server.
	// +optional
	LastOperation *OperationStatus `json:"lastOperation,omitempty"`
	// FailedAttempts counts consecutive failures of this server's step (the retry backoff).
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// LastFailureTime is when this server's step last failed.
	// +optional
	LastFailureTime *metav1.MicroTime `json:"lastFailureTime,omitempty"`
}

// BackupDirectionStatus is backup synchronization from one pool to the other.
type BackupDirectionStatus struct {
	// From is the pool whose data is exported.
	From string `json:"from"`
	// To is the pool that imports it.
	To string `json:"to"`
	// Healthy is true when every module exports FinalState or SteadyState (CMSMaster may be NotInitialized on the pool that does not host the CMS) and imports NormalState.
	Healthy bool `json:"healthy"`
	// StableSince is when the direction last became healthy.
	// +optional
	StableSince *metav1.Time `json:"stableSince,omitempty"`
	// UnhealthySince is when the direction last became unhealthy while the backup service ran; unhealthy for longer than spec.sync.timeout stalls the pair.
	// +optional
	UnhealthySince *metav1.Time `json:"unhealthySince,omitempty"`
	// Message says why the direction is not healthy.
	// +optional
	Message string `json:"message,omitempty"`
	// SyncInterval is the Backup Service's sync interval that applies to From (Get-CsBackupServiceConfiguration), when its agent could read it.
	// +optional
	SyncInterval *metav1.Duration `json:"syncInterval,omitempty"`
	// LastSyncTime is when a forced sync (Invoke-CsBackupServiceSync) of this direction last finished.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// Operation is the forced sync of this direction in flight (SyncBackup of From, on a Front End of From): both directions sync at once.
	// +optional
	Operation *OperationStatus `json:"operation,omitempty"`
	// LastOperation is the last forced sync of this direction that finished.
	// +optional
	LastOperation *OperationStatus `json:"lastOperation,omitempty"`
	// FailedAttempts counts consecutive failures of this direction's forced sync.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// LastFailureTime is when this direction's forced sync last failed.
	// +optional
	LastFailureTime *metav1.MicroTime `json:"lastFailureTime,omitempty"`
	// Modules are the backup modules' states.
	// +optional
	// +listType=map
	// +listMapKey=name
	Modules []BackupModuleStatus `json:"modules,omitempty"`
}

// BackupModuleStatus is one backup module's export and import state.
type BackupModuleStatus struct {
	// Name of the module, e.g. UserServices.PresenceFocus.
	Name string `json:"name"`
	// Export is FinalState, SteadyState, NonSteadyState, NotInitialized or ErrorState.
	Export string `json:"export"`
	// Import is NormalState or ErrorState.
	Import string `json:"import"`
}

// OperationStateStarting is the state of an operation recorded in status before its request is sent (write-ahead): the agent may or may not have it yet, and the same request, with the same id, is sent again until an agent answers for it.
const OperationStateStarting = "Starting"

// OperationStatus is a step run by an agent on one Front End server.
type OperationStatus struct {
	// Kind is PairPools, Bootstrap, StartBackupService, RestartBackupService, SyncBackup or Unpair.
	Kind string `json:"kind"`
	// ID is the operation's idempotency key, <uid>/<kind>/<target>/<sequence>; ids never repeat. An operation adopted from an agent keeps the id it was started with.
	ID string `json:"id"`
	// Target is the pool or server the step acts on.
	Target string `json:"target"`
	// Server is the Front End server whose agent runs the step.
	// +optional
	Server string `json:"server,omitempty"`
	// Endpoint is the URL of that server's agent.
	Endpoint string `json:"endpoint"`
	// Sequence is the slot's sequence number in the id; it only grows.
	// +optional
	Sequence int64 `json:"sequence,omitempty"`
	// Params are the JSON parameters sent with the request, so that a request re-sent after a restart is the same request even if the spec changed meanwhile.
	// +optional
	Params string `json:"params,omitempty"`
	// CMSPool is, for a topology write, the pool hosting the Central Management Store the write is serialized on.
	// +optional
	CMSPool string `json:"cmsPool,omitempty"`
	// State is Starting (recorded, request not yet confirmed), Pending, Running, Succeeded or Failed.
	// +optional
	State string `json:"state,omitempty"`
	// Attempt counts from 0 for the first try.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// Started is when the step was started.
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
	// Finished is when the step finished.
	// +optional
	Finished *metav1.Time `json:"finished,omitempty"`
	// Message is the agent's message, on failure the reason.
	// +optional
	Message string `json:"message,omitempty"`
	// Retryable is false on a failure that the same request would meet again (permission denied, refused parameters, not found): the pair stalls at once instead of retrying.
	// +optional
	Retryable bool `json:"retryable,omitempty"`
	// OutcomeUnknown is true on a failure after which the agent cannot tell whether the step took effect (it stopped or timed out while the cmdlet ran).
	// +optional
	OutcomeUnknown bool `json:"outcomeUnknown,omitempty"`
	// EffectNotObserved is set on a step that succeeded but whose effect was not observed when the step was needed again; it counted as a failure for the retry backoff.
	// +optional
	EffectNotObserved bool `json:"effectNotObserved,omitempty"`
}

// PoolPairList is a list of PoolPairs.
// +kubebuilder:object:root=true
type PoolPairList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PoolPair `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PoolPair{}, &PoolPairList{})
}
