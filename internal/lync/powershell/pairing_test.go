package powershell

// Pairing and unpairing as Microsoft's procedures have them: Unpair removes the backup user data
// the pools hold for each other (Remove-CsUserStoreBackupData) once the association is gone; a pair
// is refused when its versions differ or one is unknown; the version of this server's own pool is
// what Get-CsServerVersion says; a permission failure names what the step needs.

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/lync"
	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

func TestUnpairRemovesBackupUserData(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	unpair := protocol.UnpairParams{PrimaryFQDN: "pool03.contoso.com", BackupFQDN: "pool04.contoso.com"}
	if err := b.Unpair(bg, unpair); err != nil {
		t.Fatalf("Unpair: %v", err)
	}
	var writes []string
	for _, r := range log.requests(t) {
		switch r.Op {
		case opUnpair:
			writes = append(writes, r.Op)
		case opRemoveUserStoreBackupData:
			writes = append(writes, r.Op+" "+r.Params["poolFqdn"].(string))
		}
	}
	// The association first, then each pool's data for the other: the reference defines the data
	// removed as that of a pool no longer paired.
	want := []string{opUnpair, opRemoveUserStoreBackupData + " pool03.contoso.com", opRemoveUserStoreBackupData + " pool04.contoso.com"}
	if !slices.Equal(writes, want) {
		t.Errorf("writes = %q, want %q", writes, want)
	}
	if got := backups(t, b, "pool03.contoso.com", "pool04.contoso.com"); !slices.Equal(got, []string{"", ""}) {
		t.Errorf("after Unpair, backups = %q", got)
	}
}

// The association is gone but the clean-up failed: the error says so, and Unpair again (the pools
// are no longer paired) runs the clean-up only.
func TestUnpairCleanupFailureIsRetried(t *testing.T) {
	t.Setenv(envFault, opRemoveUserStoreBackupData+"=unavailable/1")
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	unpair := protocol.UnpairParams{PrimaryFQDN: "pool03.contoso.com", BackupFQDN: "pool04.contoso.com"}
	err := b.Unpair(bg, unpair)
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "no longer paired") || !strings.Contains(err.Error(), "Unpair again") {
		t.Fatalf("Unpair = %v, want the clean-up's failure, retryable", err)
	}
	if err := b.Unpair(bg, unpair); err != nil {
		t.Fatalf("Unpair again: %v", err)
	}
	if n, m := countWrites(t, log, opUnpair), countWrites(t, log, opRemoveUserStoreBackupData); n != 1 || m != 3 {
		t.Errorf("Unpair writes = %d (want 1), clean-ups = %d (want 3: one failed, two after)", n, m)
	}
}

func TestPairRefusesOtherOrUnknownVersions(t *testing.T) {
	b, log := newTestBackend(t, protocol.ProductLync2013, nil)
	err := b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool06.contoso.com"})
	if !errors.Is(err, lync.ErrConflict) || !strings.Contains(err.Error(), "Lync Server 2010") {
		t.Errorf("pairing Lync Server 2013 with 2010 = %v, want ErrConflict", err)
	}
	err = b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool07.contoso.com"})
	if !errors.Is(err, lync.ErrUnavailable) || !strings.Contains(err.Error(), "pool07.contoso.com") {
		t.Errorf("pairing with a pool of unknown version = %v, want ErrUnavailable naming it", err)
	}
	if n := countWrites(t, log, opPairPools); n != 0 {
		t.Errorf("PairPools wrote %d times", n)
	}
}

// The version of this server's pool is the installed product (Get-CsServerVersion); other pools'
// come from the topology document.
func TestVersionSources(t *testing.T) {
	for product, want := range map[string]string{
		protocol.ProductLync2013: "Lync Server 2013",
		protocol.ProductSfB2015:  "Skype for Business Server 2015",
		protocol.ProductSfB2019:  "Skype for Business Server 2019",
	} {
		t.Run(product, func(t *testing.T) {
			b, _ := newTestBackend(t, product, nil)
			for _, pool := range []string{"pool01.contoso.com", "pool02.contoso.com"} { // this server's, another
				if p, err := b.Pool(bg, pool); err != nil || p.Version != want {
					t.Errorf("Pool(%s).Version = %q, %v; want %q", pool, p.Version, err, want)
				}
			}
		})
	}
	t.Run("Get-CsServerVersion wins for this server's pool", func(t *testing.T) {
		t.Setenv(envServerVersion, "Skype for Business Server 2015 (6.0.9319.0): Volume license key installed.")
		b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
		if p, err := b.Pool(bg, "pool01.contoso.com"); err != nil || p.Version != "Skype for Business Server 2015" {
			t.Errorf("own pool = %q, %v", p.Version, err)
		}
		if p, err := b.Pool(bg, "pool02.contoso.com"); err != nil || p.Version != "Lync Server 2013" {
			t.Errorf("other pool = %q, %v", p.Version, err)
		}
	})
	t.Run("an unreadable Get-CsServerVersion leaves the topology's", func(t *testing.T) {
		t.Setenv(envServerVersion, "The license type and version information could not be retrieved.")
		b, _ := newTestBackend(t, protocol.ProductSfB2019, nil)
		if p, err := b.Pool(bg, "pool01.contoso.com"); err != nil || p.Version != "Skype for Business Server 2019" {
			t.Errorf("own pool = %q, %v", p.Version, err)
		}
	})
}

// A permission failure names what the failed step needs.
func TestPermissionHints(t *testing.T) {
	cases := []struct {
		op   string
		call func(*Backend) error
		want []string
	}{
		{opGetBackupStatus, func(b *Backend) error { _, err := b.BackupStatus(bg, "pool03.contoso.com"); return err },
			[]string{"RTCUniversalServerAdmins", "WCF"}},
		{opSyncBackup, func(b *Backend) error { return b.SyncBackup(bg, "pool03.contoso.com") }, []string{"RTCUniversalServerAdmins"}},
		{opRestartBackupService, func(b *Backend) error { return b.RestartBackupService(bg) },
			[]string{"RTCUniversalServerAdmins", "local Administrator", "Stop-CsWindowsService"}},
		{opStartBackupService, func(b *Backend) error { return b.StartBackupService(bg) }, []string{"local Administrator"}},
		{opPairPools, func(b *Backend) error {
			return b.PairPools(bg, protocol.PairPoolsParams{PrimaryFQDN: "pool01.contoso.com", BackupFQDN: "pool02.contoso.com"})
		}, []string{"RTCUniversalServerAdmins", "Enable-CsTopology", "Domain Admins", "Grant-CsSetupPermission -ComputerOU"}},
		{opUnpair, func(b *Backend) error {
			return b.Unpair(bg, protocol.UnpairParams{PrimaryFQDN: "pool03.contoso.com", BackupFQDN: "pool04.contoso.com"})
		}, []string{"Domain Admins", "Grant-CsSetupPermission"}},
	}
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			t.Setenv(envErrorOn, c.op+"=permission-ad")
			b, _ := newTestBackend(t, protocol.ProductLync2013, nil)
			err := c.call(b)
			if !errors.Is(err, lync.ErrPermission) {
				t.Fatalf("err = %v, want ErrPermission", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	for _, op := range []string{opGetPool, opIdentity, opGetBackupService} {
		if permissionHint(op) != PermissionHint {
			t.Errorf("%s: %q", op, permissionHint(op))
		}
	}
}
