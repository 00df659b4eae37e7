// Package v1alpha1 contains the PoolPair API of the dr.lync.io group: two Lync Server Front End
// pools that back each other up for disaster recovery.
// +kubebuilder:object:generate=true
// +groupName=dr.lync.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the PoolPair API.
	GroupVersion = schema.GroupVersion{Group: "dr.lync.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
