package powershell

// Get-CsPoolBackupRelationship answering as the reference leaves open: $null for an unpaired pool,
// an object with an empty backup pool, a string, another property name, a failure. Each is read
// as unpaired only where it says so; a failure or an unknown shape is its own error, never
// lync.ErrNotFound ("pool not in the topology") and never "unpaired".

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestRelationshipAnswers(t *testing.T) {
	cases := []struct {
		name   string
		mode   string // envRelationship
		pool   string
		backup string
	}{
		{"paired: BackupPoolFqdn", "", "pool03.contoso.com", "pool04.contoso.com"},
		{"unpaired: $null", "", "pool01.contoso.com", ""},
		{"unpaired: an empty BackupPoolFqdn", "pool01.contoso.com=empty", "pool01.contoso.com", ""},
		{"paired: the answer is the FQDN", "pool03.contoso.com=string", "pool03.contoso.com", "pool04.contoso.com"},
		{"unpaired: no string", "pool01.contoso.com=string", "pool01.contoso.com", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(envRelationship, c.mode)
			b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
			p, err := b.Pool(bg, c.pool)
			if err != nil || p.BackupPool != c.backup {
				t.Errorf("Pool = %+v, %v; want backup pool %q", p, err, c.backup)
			}
			st, err := b.BackupStatus(bg, c.pool)
			if err != nil || st.BackupPool != c.backup {
				t.Errorf("BackupStatus = %+v, %v; want backup pool %q", st, err, c.backup)
			}
		})
	}
}

// The cmdlet fails (for a paired and for an unpaired pool), with a "Cannot find" message that
// would read as "pool not in the topology": its own error, naming the cmdlet; and no write.
func TestRelationshipCmdletFailure(t *testing.T) {
	for _, pool := range []string{"pool03.contoso.com", "pool01.contoso.com"} {
		t.Run(pool, func(t *testing.T) {
			t.Setenv(envRelationship, pool+"=throw")
			b, log := newTestBackend(t, protocol.ProductLync2013, nil)
			for name, read := range map[string]func() error{
				"Pool":         func() error { _, err := b.Pool(bg, pool); return err },
				"BackupStatus": func() error { _, err := b.BackupStatus(bg, pool); return err },
			} {
				err := read()
				var re *RelationshipError
				if !errors.As(err, &re) || re.Pool != pool || re.Err == nil {
					t.Fatalf("%s = %v (%T), want a *RelationshipError", name, err, err)
				}
				for _, sentinel := range []error{lync.ErrNotFound, lync.ErrConflict, lync.ErrPermission, lync.ErrUnavailable} {
					if errors.Is(err, sentinel) {
						t.Errorf("%s = %v, which is %v", name, err, sentinel)
					}
				}
				for _, want := range []string{"Get-CsPoolBackupRelationship -PoolFqdn " + pool, "Cannot find a backup relationship", "unknown"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s error %q lacks %q", name, err, want)
					}
				}
			}
			err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: pool, BackupFQDN: "pool02.contoso.com"})
			var re *RelationshipError
			if !errors.As(err, &re) {
				t.Errorf("PairPools = %v, want the relationship's error", err)
			}
			if err := b.Unpair(bg, protocol.UnpairParams{PrimaryFQDN: pool, BackupFQDN: "pool02.contoso.com"}); !errors.As(err, &re) {
				t.Errorf("Unpair = %v, want the relationship's error", err)
			}
			for _, op := range log.ops(t) {
				if op == opPairPools || op == opUnpair || op == opRemoveUserStoreBackupData {
					t.Errorf("a write ran on an unknown pairing: %v", log.ops(t))
				}
			}
		})
	}
	// A permission failure of the cmdlet stays one, with the hint.
	t.Run("permission", func(t *testing.T) {
		err := relationshipFailure(opGetPool, "pool01.contoso.com", cannedError("permission"))
		if !errors.Is(err, lync.ErrPermission) || !strings.Contains(err.Error(), "RTCUniversalServerAdmins") {
			t.Errorf("err = %v, want ErrPermission with the hint", err)
		}
	})
}

// An answer whose backup pool is in a property this backend does not know: an error naming the
// properties it has (for the administrator and `lync-agent doctor`), never "unpaired"; once the
// name is in RelationshipPoolProperties, it is read.
func TestRelationshipPropertyNames(t *testing.T) {
	t.Setenv(envRelationship, "pool03.contoso.com=prop:PartnerPool,pool01.contoso.com=prop:PartnerPool")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	_, err := b.Pool(bg, "pool03.contoso.com")
	var re *RelationshipError
	if !errors.As(err, &re) || re.Err != nil || !strings.Contains(err.Error(), "[PartnerPool, PoolFqdn]") ||
		!strings.Contains(err.Error(), "RelationshipPoolProperties") {
		t.Fatalf("Pool = %v, want an error naming the properties seen", err)
	}
	if errors.Is(err, lync.ErrNotFound) {
		t.Errorf("an unknown shape reads as not found: %v", err)
	}
	// Unpaired pool answering an object of the same shape: not "unpaired" either.
	if err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"}); !errors.As(err, &re) {
		t.Errorf("PairPools = %v, want the relationship's error", err)
	}
	if n := countWrites(t, log, opPairPools); n != 0 {
		t.Errorf("PairPools wrote %d times", n)
	}

	saved := RelationshipPoolProperties
	t.Cleanup(func() { RelationshipPoolProperties = saved })
	RelationshipPoolProperties = append(slices.Clone(saved), "partnerpool") // compared case-insensitively
	if got := backups(t, b, "pool03.contoso.com", "pool01.contoso.com"); !slices.Equal(got, []string{"pool04.contoso.com", ""}) {
		t.Errorf("with PartnerPool known, backups = %q", got)
	}
}

// Several answers: read only when they agree.
func TestRelationshipAnswersDisagree(t *testing.T) {
	r := &relationshipResult{Answers: jsonList[relationshipAnswer]{
		{"BackupPoolFqdn": "pool02.contoso.com"}, {"BackupPoolFqdn": "POOL02.contoso.com."},
	}}
	if got, err := r.backupPool(opGetPool, "pool01.contoso.com"); err != nil || got != "pool02.contoso.com" {
		t.Errorf("agreeing answers = %q, %v", got, err)
	}
	r.Answers = append(r.Answers, relationshipAnswer{"BackupPoolFqdn": "pool09.contoso.com"})
	var re *RelationshipError
	if got, err := r.backupPool(opGetPool, "pool01.contoso.com"); !errors.As(err, &re) || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("disagreeing answers = %q, %v; want an error", got, err)
	}
}
