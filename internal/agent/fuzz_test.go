package agent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// FuzzDecodeOperationRequest feeds arbitrary bodies to the agent's request decoding. Whatever it
// accepts must be a request the backend can take at face value: a known kind, a valid id, params
// of the kind's type with every FQDN valid, and the same request after a round trip through JSON.
// Whatever it refuses must be refused with a 4xx that names what is wrong.
func FuzzDecodeOperationRequest(f *testing.F) {
	for _, seed := range []string{
		`{"id":"u/Bootstrap/fe01.pool01.contoso.com/1","kind":"Bootstrap"}`,
		`{"id":"x","kind":"PairPools","params":{"primaryFqdn":"pool01.contoso.com","backupFqdn":"pool02.contoso.com","voiceFailover":{"enabled":true,"failureDetectionIntervalSeconds":120}}}`,
		`{"id":"x","kind":"Unpair","params":{"primaryFqdn":"pool01.contoso.com","backupFqdn":"pool02.contoso.com"}}`,
		`{"id":"x","kind":"SyncBackup","params":{"poolFqdn":"pool01.contoso.com"}}`,
		`{"id":"x","kind":"RestartBackupService","params":{}}`,
		`{"id":"x","kind":"SyncBackup","params":{"poolFqdn":"pool01.contoso.com; Remove-CsPool"}}`,
		`{"id":"x","kind":"StartBackupService","params":null}`,
		`{"id":"x","kind":"Bootstrap"} {"id":"y"}`,
		`{"id":"x","kind":"PairPools","params":{"primaryFqdn":"a.b","backupFqdn":"A.B."}}`,
		`[]`, ``, `{"id":"` + string(bytes.Repeat([]byte("a"), 600)) + `","kind":"Bootstrap"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/operations", bytes.NewReader(body))
		req, params, apiErr := decodeOperationRequest(w, r)
		if apiErr != nil {
			if apiErr.status < 400 || apiErr.status >= 500 || apiErr.body.Message == "" {
				t.Fatalf("refusal %d %+v for %q", apiErr.status, apiErr.body, body)
			}
			return
		}
		if !slices.Contains(protocol.Kinds, req.Kind) {
			t.Fatalf("accepted unknown kind %q", req.Kind)
		}
		if err := protocol.ValidateOperationID(req.ID); err != nil {
			t.Fatalf("accepted id %q: %v", req.ID, err)
		}
		var fqdns []string
		switch p := params.(type) {
		case *protocol.PairPoolsParams:
			fqdns = []string{p.PrimaryFQDN, p.BackupFQDN}
		case *protocol.UnpairParams:
			fqdns = []string{p.PrimaryFQDN, p.BackupFQDN}
		case *protocol.SyncBackupParams:
			fqdns = []string{p.PoolFQDN}
		case nil:
			if req.Kind == protocol.KindPairPools || req.Kind == protocol.KindUnpair || req.Kind == protocol.KindSyncBackup {
				t.Fatalf("%s accepted without params", req.Kind)
			}
		default:
			t.Fatalf("params of unexpected type %T", params)
		}
		for _, fqdn := range fqdns {
			if err := protocol.ValidateFQDN("fqdn", fqdn); err != nil {
				t.Fatalf("accepted %q: %v", fqdn, err)
			}
		}
		// A round trip through JSON gives the same request: nothing was accepted that the agent
		// would journal and replay differently.
		raw, err := json.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		again := protocol.OperationRequest{ID: req.ID, Kind: req.Kind, Params: raw}
		if params == nil {
			again.Params = nil
		}
		params2, err := again.DecodeParams()
		if err != nil {
			t.Fatalf("re-encoded params %s refused: %v", raw, err)
		}
		raw2, _ := json.Marshal(params2)
		if !bytes.Equal(raw, raw2) {
			t.Fatalf("round trip changed params: %s -> %s", raw, raw2)
		}
	})
}
