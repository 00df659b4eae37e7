// Package conditions keeps metav1.Conditions the kstatus way: Ready always present, Reconciling and
// Stalled only while True, transition times that move only when a status flips, and each condition
// stamped with the generation it describes.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Setter edits a condition list on behalf of one object generation.
type Setter struct {
	Conditions *[]metav1.Condition
	Generation int64
}

// Set records a condition. meta.SetStatusCondition keeps LastTransitionTime unless the status flips.
func (s Setter) Set(conditionType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(s.Conditions, metav1.Condition{
		Type:               conditionType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: s.Generation,
	})
}

// True records a True condition.
func (s Setter) True(conditionType, reason, message string) {
	s.Set(conditionType, metav1.ConditionTrue, reason, message)
}

// False records a False condition.
func (s Setter) False(conditionType, reason, message string) {
	s.Set(conditionType, metav1.ConditionFalse, reason, message)
}

// Remove deletes a condition: kstatus wants abnormal-true conditions (Reconciling, Stalled) absent
// rather than False.
func (s Setter) Remove(conditionType string) {
	meta.RemoveStatusCondition(s.Conditions, conditionType)
}

// Get returns a condition or nil.
func Get(conds []metav1.Condition, conditionType string) *metav1.Condition {
	return meta.FindStatusCondition(conds, conditionType)
}

// IsTrue reports whether a condition is present and True.
func IsTrue(conds []metav1.Condition, conditionType string) bool {
	return meta.IsStatusConditionTrue(conds, conditionType)
}
