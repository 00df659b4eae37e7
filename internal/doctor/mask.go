package doctor

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Masker hides the values that identify an organisation in a report: DNS names, user, domain and
// site names, distinguished names and domain SIDs. A masked value keeps its first letter, its
// shape (the labels of a DNS name, its top-level domain) and a short hash of the whole value, so
// two values stay apart and the same value masks the same way in every report (on every server):
//
//	fe01.pool01.contoso.com -> f***.p***.c***.com~69ec
//	CONTOSO\svc-lyncagent   -> C***~11f0\s***~a451
//	S-1-5-21-1-2-3-512      -> S-1-5-21-***~ba10-512 (the last number, the RID, is kept)
//
// The hash is not a secret: a value short enough to guess can be checked against its mask.
// Besides the values registered, every DNS name under a registered name's domain is masked,
// and every domain SID, wherever they appear (in a cmdlet's error message, say).
type Masker struct {
	exact    map[string]valueKind // ASCII-lowercased value -> how it is masked
	suffixes map[string]bool      // DNS domains (lowercase) whose names are masked
}

// valueKind says how a registered value is masked.
type valueKind int

const (
	kindWord valueKind = iota
	kindName
	kindDN
)

// mask masks one occurrence of a registered value: its own letters (their case) and the hash of
// the value, which does not depend on case.
func (k valueKind) mask(occurrence string) string {
	switch k {
	case kindName:
		return maskDNS(occurrence)
	case kindDN:
		return maskDN(occurrence)
	}
	return maskWord(occurrence)
}

// wellKnown are names every Windows server has: they identify no one, and masking them would
// garble the report's own words ("a local Administrator").
var wellKnown = map[string]bool{
	"administrator": true, "administrators": true, "system": true, "guest": true, "users": true, "everyone": true,
	"builtin": true, "nt authority": true, "local service": true, "network service": true, "workgroup": true,
	"localhost": true, "root": true,
}

// NewMasker returns a Masker that knows no values yet.
func NewMasker() *Masker {
	return &Masker{exact: map[string]valueKind{}, suffixes: map[string]bool{}}
}

// Add registers a value of any kind: an account (DOMAIN\user), a distinguished name, a DNS name
// or a word, told apart by their shape.
func (m *Masker) Add(values ...string) {
	for _, v := range values {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
		case strings.Contains(v, `\`):
			m.AddAccount(v)
		case strings.Contains(v, "=") && strings.Contains(v, ","):
			m.AddDN(v)
		case strings.Contains(v, ".") && !strings.Contains(v, " "):
			m.AddName(v)
		default:
			m.AddWord(v)
		}
	}
}

// AddName registers a DNS name (a FQDN or a single label) and, for a FQDN, its domain: every name
// that ends in the last two labels of a registered name is masked too.
func (m *Masker) AddName(name string) {
	name = strings.TrimSuffix(strings.TrimSpace(name), ".")
	if name == "" || net.ParseIP(name) != nil || strings.ContainsAny(name, ` \/=,`) {
		return
	}
	lower := asciiLower(name)
	m.exact[lower] = kindName
	labels := strings.Split(lower, ".")
	if len(labels) >= 2 {
		m.suffixes[strings.Join(labels[len(labels)-2:], ".")] = true
		m.AddWord(strings.Split(name, ".")[0]) // the host name alone (NetBIOS, a log line)
	}
}

// AddWord registers a value that is not a DNS name: a user or domain name, a site, an OU.
// Values shorter than 3 characters are not masked (they would mask parts of ordinary words).
func (m *Masker) AddWord(w string) {
	w = strings.TrimSpace(w)
	if len(w) < 3 || wellKnown[asciiLower(w)] {
		return
	}
	m.exact[asciiLower(w)] = kindWord
}

// AddAccount registers DOMAIN\user or user@domain.
func (m *Masker) AddAccount(account string) {
	if domain, user, ok := strings.Cut(account, `\`); ok {
		m.AddWord(domain)
		m.AddWord(user)
		return
	}
	if user, domain, ok := strings.Cut(account, "@"); ok {
		m.AddWord(user)
		m.AddName(domain)
		return
	}
	m.AddWord(account)
}

// AddDN registers a distinguished name: each attribute value but the last DC (the top-level
// domain), and the whole DN.
func (m *Masker) AddDN(dn string) {
	dn = strings.TrimSpace(dn)
	if dn == "" {
		return
	}
	parts := splitDN(dn)
	for i, p := range parts {
		attr, val, ok := strings.Cut(p, "=")
		if ok && !(i == len(parts)-1 && strings.EqualFold(strings.TrimSpace(attr), "DC")) {
			m.AddWord(val)
		}
	}
	m.exact[asciiLower(dn)] = kindDN
}

// maskDN masks each attribute value of a DN but the last DC.
func maskDN(dn string) string {
	parts := splitDN(dn)
	for i, p := range parts {
		attr, val, ok := strings.Cut(p, "=")
		if !ok || i == len(parts)-1 && strings.EqualFold(strings.TrimSpace(attr), "DC") {
			continue
		}
		parts[i] = attr + "=" + maskWord(strings.TrimSpace(val))
	}
	return strings.Join(parts, ",")
}

// Mask returns s with every known value, every DNS name under a known domain and every domain
// SID masked.
func (m *Masker) Mask(s string) string {
	if m == nil || s == "" {
		return s
	}
	s = m.maskExact(s)
	return m.maskTokens(s)
}

// MaskChecks masks the text of every check.
func (m *Masker) MaskChecks(checks []Check) []Check {
	out := make([]Check, len(checks))
	for i, c := range checks {
		c.Saw = m.Mask(c.Saw)
		c.Fix = m.Mask(c.Fix)
		out[i] = c
	}
	return out
}

// maskExact replaces the registered values, longest first, where they stand alone: not inside a
// longer name or word.
func (m *Masker) maskExact(s string) string {
	keys := make([]string, 0, len(m.exact))
	for k := range m.exact {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) > len(keys[j])
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		s = replaceStandalone(s, k, m.exact[k].mask)
	}
	return s
}

// replaceStandalone replaces the case-insensitive occurrences of key (ASCII-lowercased) in s that
// are not part of a longer name: the byte before is not a name character, and the byte after is
// neither a name character nor a dot followed by one.
func replaceStandalone(s, key string, with func(string) string) string {
	lower := asciiLower(s)
	var out strings.Builder
	last := 0
	for i := 0; i+len(key) <= len(s); {
		j := strings.Index(lower[i:], key)
		if j < 0 {
			break
		}
		start, end := i+j, i+j+len(key)
		before := start == 0 || !isNameByte(s[start-1]) && s[start-1] != '.'
		after := end == len(s) || !isNameByte(s[end]) && !(s[end] == '.' && end+1 < len(s) && isNameByte(s[end+1]))
		if before && after {
			out.WriteString(s[last:start])
			out.WriteString(with(s[start:end]))
			last = end
			i = end
			continue
		}
		i = start + 1
	}
	if last == 0 {
		return s
	}
	out.WriteString(s[last:])
	return out.String()
}

var (
	domainSID = regexp.MustCompile(`^S-1-5-21-\d+-\d+-\d+(-\d+)?$`)
	nameToken = regexp.MustCompile(`[A-Za-z0-9_.-]+`)
)

// maskTokens masks the names under a known domain and the domain SIDs that maskExact left.
func (m *Masker) maskTokens(s string) string {
	return nameToken.ReplaceAllStringFunc(s, func(tok string) string {
		core := strings.TrimRight(tok, ".")
		trail := tok[len(core):]
		if domainSID.MatchString(core) {
			return maskSID(core) + trail
		}
		lower := asciiLower(core)
		if !strings.Contains(lower, ".") || !strings.ContainsAny(lower, "abcdefghijklmnopqrstuvwxyz") {
			return tok
		}
		for suffix := range m.suffixes {
			if lower == suffix || strings.HasSuffix(lower, "."+suffix) {
				return maskDNS(core) + trail
			}
		}
		return tok
	})
}

// maskDNS masks each label but the last (the top-level domain) and adds the hash of the name.
func maskDNS(name string) string {
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return maskWord(name)
	}
	for i := range labels[:len(labels)-1] {
		labels[i] = firstRune(labels[i]) + "***"
	}
	return strings.Join(labels, ".") + "~" + shortHash(asciiLower(name))
}

func maskWord(w string) string { return firstRune(w) + "***~" + shortHash(asciiLower(w)) }

// maskSID keeps the RID (512 is Domain Admins in every domain) and hides the domain.
func maskSID(sid string) string {
	parts := strings.Split(sid, "-")
	domain := strings.Join(parts[4:7], "-")
	out := "S-1-5-21-***~" + shortHash(domain)
	if len(parts) > 7 {
		out += "-" + parts[7]
	}
	return out
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:2])
}

func firstRune(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError || size == 0 {
		return ""
	}
	return s[:size]
}

func isNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b >= 0x80
}

// asciiLower lowercases ASCII letters only, so byte offsets stay those of the original.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// splitDN splits a distinguished name at its unescaped commas.
func splitDN(dn string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(dn); i++ {
		switch c := dn[i]; {
		case c == '\\' && i+1 < len(dn):
			cur.WriteByte(c)
			cur.WriteByte(dn[i+1])
			i++
		case c == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}
