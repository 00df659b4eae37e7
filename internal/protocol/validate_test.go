package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateFQDN(t *testing.T) {
	for _, ok := range []string{"pool01.contoso.com", "FE01.Pool01.Contoso.com", "a.b", "x-1.y-2.contoso.com"} {
		if err := ValidateFQDN("fqdn", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "pool01", "pool01.contoso.com; Remove-CsPool", "$(whoami).contoso.com", "pool`01.contoso.com",
		`pool"01.contoso.com`, "pool 01.contoso.com", "pool01.contoso.com\n", "-pool.contoso.com", "pool-.contoso.com",
		strings.Repeat("a", 64) + ".contoso.com", strings.Repeat("a.", 127) + "com"} {
		if err := ValidateFQDN("fqdn", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSameFQDNIgnoresCaseAndTrailingDot(t *testing.T) {
	if !SameFQDN("Pool01.Contoso.com.", "pool01.contoso.com") || SameFQDN("pool01.contoso.com", "pool02.contoso.com") {
		t.Fatal("SameFQDN compares wrongly")
	}
}

func TestDecodeParamsNamesTheParameter(t *testing.T) {
	cases := []struct {
		req   OperationRequest
		field string
	}{
		{OperationRequest{ID: "a/1", Kind: "RunScript"}, "kind"},
		{OperationRequest{ID: "a/1"}, "kind"},
		{OperationRequest{ID: "", Kind: KindBootstrap}, "id"},
		{OperationRequest{ID: "a b", Kind: KindBootstrap}, "id"},
		{OperationRequest{ID: "a/1", Kind: KindBootstrap, Params: []byte(`{"script":"x"}`)}, "params"},
		{OperationRequest{ID: "a/1", Kind: KindSyncBackup, Params: []byte(`{"poolFqdn":"p.contoso.com"} {}`)}, "params"},
		{OperationRequest{ID: "a/1", Kind: KindSyncBackup, Params: []byte(`{"poolFqdn":"x;y.contoso.com"}`)}, "params.poolFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindPairPools, Params: []byte(`{"primaryFqdn":"a.contoso.com","backupFqdn":"A.contoso.com"}`)}, "params.backupFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindPairPools, Params: []byte(`{"primaryFqdn":"a.contoso.com","backupFqdn":"b.contoso.com","voiceFailover":{"enabled":true,"failureDetectionIntervalSeconds":5}}`)}, "params.voiceFailover.failureDetectionIntervalSeconds"},
		{OperationRequest{ID: "a/1", Kind: KindUnpair, Params: []byte(`{"primaryFqdn":"a.contoso.com"}`)}, "params.backupFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindFailoverCMS}, "params.toPoolFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindFailoverCMS, Params: []byte(`{"toPoolFqdn":"p;q.contoso.com"}`)}, "params.toPoolFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindFailoverCMS, Params: []byte(`{"toPoolFqdn":"p.contoso.com","force":true}`)}, "params"},
		{OperationRequest{ID: "a/1", Kind: KindFailoverCMS, Params: []byte(`{"toPoolFqdn":"p.contoso.com","disaster":"yes"}`)}, "params"},
		{OperationRequest{ID: "a/1", Kind: KindMoveEdgeNextHop, Params: []byte(`{"registrarFqdn":"p.contoso.com"}`)}, "params.edgePoolFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindMoveEdgeNextHop, Params: []byte(`{"edgePoolFqdn":"e.contoso.com","registrarFqdn":"p"}`)}, "params.registrarFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindMoveEdgeNextHop, Params: []byte(`{"edgePoolFqdn":"e.contoso.com","registrarFqdn":"E.contoso.com."}`)}, "params.registrarFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindFailoverPool, Params: []byte(`{"poolFqdn":""}`)}, "params.poolFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindFailoverPool, Params: []byte(`{"poolFqdn":"p.contoso.com","waitTime":"1m"}`)}, "params"},
		{OperationRequest{ID: "a/1", Kind: KindFailbackPool, Params: []byte(`{"poolFqdn":"$(x).contoso.com"}`)}, "params.poolFqdn"},
		{OperationRequest{ID: "a/1", Kind: KindFailbackPool, Params: []byte(`{"poolFqdn":"p.contoso.com","disasterMode":true}`)}, "params.disasterMode"},
	}
	for _, tc := range cases {
		_, err := tc.req.DecodeParams()
		if err == nil {
			t.Errorf("%+v accepted", tc.req)
			continue
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			if fe.Field != tc.field {
				t.Errorf("%+v: error names %q, want %q (%v)", tc.req, fe.Field, tc.field, err)
			}
		} else if !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%+v: error %q does not name %q", tc.req, err, tc.field)
		}
	}
	p, err := (&OperationRequest{ID: "uid/PairPools/a.contoso.com/1/0", Kind: KindPairPools,
		Params: []byte(`{"primaryFqdn":"a.contoso.com","backupFqdn":"b.contoso.com","voiceFailover":{"enabled":true,"failureDetectionIntervalSeconds":300}}`)}).DecodeParams()
	if err != nil {
		t.Fatal(err)
	}
	if pp := p.(*PairPoolsParams); pp.BackupFQDN != "b.contoso.com" || pp.VoiceFailover.FailureDetectionIntervalSeconds != 300 {
		t.Fatalf("decoded %+v", pp)
	}
	if p, err := (&OperationRequest{ID: "a/1", Kind: KindBootstrap}).DecodeParams(); err != nil || p != nil {
		t.Fatalf("Bootstrap without params: %v %v", p, err)
	}
}

func TestDecodeFailoverParams(t *testing.T) {
	decode := func(kind OperationKind, params string) any {
		t.Helper()
		p, err := (&OperationRequest{ID: "uid/" + string(kind) + "/1", Kind: kind, Params: []byte(params)}).DecodeParams()
		if err != nil {
			t.Fatalf("%s %s: %v", kind, params, err)
		}
		return p
	}
	if p := decode(KindFailoverCMS, `{"toPoolFqdn":"pool02.contoso.com","disaster":true}`).(*FailoverCMSParams); p.ToPoolFQDN != "pool02.contoso.com" || !p.Disaster || p.WhatIf || !IsFailover(KindFailoverCMS) || WhatIf(p) {
		t.Errorf("FailoverCMS: %+v", p)
	}
	if p := decode(KindMoveEdgeNextHop, `{"edgePoolFqdn":"edge01.contoso.com","registrarFqdn":"pool02.contoso.com","whatIf":true}`).(*EdgeNextHopParams); p.EdgePoolFQDN != "edge01.contoso.com" || p.RegistrarFQDN != "pool02.contoso.com" || !WhatIf(p) {
		t.Errorf("MoveEdgeNextHop: %+v", p)
	}
	if p := decode(KindFailoverPool, `{"poolFqdn":"pool01.contoso.com","disasterMode":true,"whatIf":true}`).(*PoolFailoverParams); p.PoolFQDN != "pool01.contoso.com" || !p.DisasterMode || !WhatIf(p) {
		t.Errorf("FailoverPool: %+v", p)
	}
	if p := decode(KindFailbackPool, `{"poolFqdn":"pool01.contoso.com"}`).(*PoolFailoverParams); p.PoolFQDN != "pool01.contoso.com" || p.DisasterMode || WhatIf(p) {
		t.Errorf("FailbackPool: %+v", p)
	}
	for _, k := range []OperationKind{KindPairPools, KindUnpair, KindBootstrap, KindStartBackupService, KindRestartBackupService, KindSyncBackup} {
		if IsFailover(k) {
			t.Errorf("%s is not a failover kind", k)
		}
	}
	if WhatIf(&SyncBackupParams{PoolFQDN: "p.contoso.com"}) || WhatIf(nil) {
		t.Errorf("WhatIf of other kinds")
	}
}
