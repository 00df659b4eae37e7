// Package certinfo names certificates and their usages in messages for people: the agent's
// refusals of client certificates and the manager's of server certificates say which certificate
// and why in the same words.
package certinfo

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Describe names a certificate: `"CN=fe01" (issued by "CN=Contoso CA", serial 1a2b)`.
func Describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (issued by %q, serial %s)", Name(c.Subject), Name(c.Issuer), Serial(c))
}

// Name is a name's common name as "CN=...", or the whole distinguished name when it has none.
func Name(n pkix.Name) string {
	if n.CommonName != "" {
		return "CN=" + n.CommonName
	}
	if s := n.String(); s != "" {
		return s
	}
	return "(empty name)"
}

// Serial is the serial number in hexadecimal, as Windows shows it.
func Serial(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return "unknown"
	}
	return fmt.Sprintf("%x", c.SerialNumber.Bytes())
}

// Date is a certificate date in messages.
func Date(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// Hosts lists the names a certificate is valid for: DNS names and IP addresses.
func Hosts(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// AllowsUsage reports whether c may be used for usage: no extended key usage at all (no
// restriction), usage itself, or any.
func AllowsUsage(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, usage) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// UsageNames lists a certificate's extended key usages as Windows names them.
func UsageNames(c *x509.Certificate) string {
	var out []string
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "Server Authentication")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "Client Authentication")
		case x509.ExtKeyUsageCodeSigning:
			out = append(out, "Code Signing")
		case x509.ExtKeyUsageEmailProtection:
			out = append(out, "Secure Email")
		case x509.ExtKeyUsageTimeStamping:
			out = append(out, "Time Stamping")
		case x509.ExtKeyUsageOCSPSigning:
			out = append(out, "OCSP Signing")
		default:
			out = append(out, fmt.Sprintf("extended key usage #%d", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
