package localrun

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
)

// Progress is what a user watching a PoolPair wants to see: its phase, the step in flight (or why
// it is stalled) and the message that goes with it.
type Progress struct {
	Phase   drv1alpha1.Phase
	Ready   metav1.ConditionStatus
	Step    string // the Reconciling reason, while reconciling
	Stalled string // the Stalled reason, while stalled
	Message string
}

// ProgressOf summarizes a PoolPair's status.
func ProgressOf(pp *drv1alpha1.PoolPair) Progress {
	conds := pp.Status.Conditions
	p := Progress{Phase: pp.Status.Phase, Ready: metav1.ConditionUnknown}
	if c := meta.FindStatusCondition(conds, drv1alpha1.ConditionReady); c != nil {
		p.Ready, p.Message = c.Status, c.Message
	}
	// The Reconciling or Stalled message says more than Ready's while either is True.
	if c := meta.FindStatusCondition(conds, drv1alpha1.ConditionReconciling); c != nil && c.Status == metav1.ConditionTrue {
		p.Step, p.Message = c.Reason, c.Message
	}
	if c := meta.FindStatusCondition(conds, drv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
		p.Stalled, p.Message = c.Reason, c.Message
	}
	return p
}

// Synced says the pair reached its goal: Ready=True in phase Synced.
func (p Progress) Synced() bool {
	return p.Ready == metav1.ConditionTrue && p.Phase == drv1alpha1.PhaseSynced
}

// String is one line: phase=Bootstrapped  step=StartingBackupService  <message>.
func (p Progress) String() string {
	phase := string(p.Phase)
	if phase == "" {
		phase = "-"
	}
	var state string
	switch {
	case p.Stalled != "":
		state = "stalled=" + p.Stalled
	case p.Step != "":
		state = "step=" + p.Step
	default:
		state = "ready=" + string(p.Ready)
	}
	return strings.TrimSpace(fmt.Sprintf("phase=%-20s %-28s %s", phase, state, p.Message))
}

// Conditions lists a PoolPair's conditions, one per line, for failure reports.
func Conditions(pp *drv1alpha1.PoolPair) string {
	var b strings.Builder
	for _, c := range pp.Status.Conditions {
		fmt.Fprintf(&b, "    %-21s %-5s %-26s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}
