package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lync-dr/poolpair-operator/internal/protocol"
)

// Journal bounds. Finished operations are pruned when older than JournalRetention, and the oldest
// finished ones go first when more than JournalMaxRecords are kept. Operations still in flight are
// never pruned. The operator's idempotency keys change with every attempt and generation, so an
// operator asking again after the retention period gets a new operation, not a lost one.
const (
	JournalMaxRecords = 10000
	JournalRetention  = 30 * 24 * time.Hour
	// JournalFile is the bbolt database inside the journal directory.
	JournalFile = "operations.db"
)

// interruptedMessage marks an operation a previous agent process left Pending or Running.
const interruptedMessage = "interrupted: the agent restarted while it ran"

var (
	bucketOps   = []byte("operations") // id -> record (JSON)
	bucketOrder = []byte("order")      // seq (big-endian uint64) -> id, oldest first
	bucketMeta  = []byte("meta")
	keyLastBoot = []byte("lastBootstrap") // protocol.BootstrapRun (JSON)

	errExists = errors.New("operation already in the journal")
)

// Journal is the agent's durable record of operations, so a restarted agent still answers for
// them. It is a bbolt database in a directory; one process at a time may open it.
type Journal struct {
	db  *bolt.DB
	now func() time.Time

	mu         sync.Mutex
	count      int
	lastPrune  time.Time
	maxRecords int
	retention  time.Duration
}

// record is what the journal keeps for one operation.
type record struct {
	Op      protocol.Operation `json:"operation"`
	Target  string             `json:"target"`
	Created time.Time          `json:"created"`
	Seq     uint64             `json:"seq"`
	// Bootstrap holds Bootstrapper's result for a Bootstrap operation that ran.
	Bootstrap *bootstrapOutcome `json:"bootstrap,omitempty"`
}

type bootstrapOutcome struct {
	ExitCode       int      `json:"exitCode"`
	Succeeded      bool     `json:"succeeded"`
	RebootRequired bool     `json:"rebootRequired,omitempty"`
	BackupPool     string   `json:"backupPool,omitempty"`
	NextSteps      []string `json:"nextSteps,omitempty"`
}

// OpenJournal opens (creating if needed) the journal in dir. Operations a previous process left
// Pending or Running are kept as they are: the Handler decides their fate when it starts (a
// Bootstrapper run may still be going on; anything else was cut short).
func OpenJournal(dir string) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("journal: directory required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	path := filepath.Join(dir, JournalFile)
	// The timeout turns a second agent on the same directory into an error instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("journal %s: in use by another process (is another lync-agent running?)", path)
		}
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	j := &Journal{db: db, now: time.Now, maxRecords: JournalMaxRecords, retention: JournalRetention}
	if err := j.open(); err != nil {
		db.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return j, nil
}

// Close closes the database.
func (j *Journal) Close() error { return j.db.Close() }

// open creates the buckets, counts records and prunes.
func (j *Journal) open() error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOps, bucketOrder, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		j.count = tx.Bucket(bucketOps).Stats().KeyN
		return nil
	})
	if err != nil {
		return err
	}
	return j.prune()
}

// unfinished returns the operations that are neither Succeeded nor Failed, oldest first.
func (j *Journal) unfinished() ([]record, error) {
	var out []record
	err := j.db.View(func(tx *bolt.Tx) error {
		ops := tx.Bucket(bucketOps)
		c := tx.Bucket(bucketOrder).Cursor()
		for k, id := c.First(); k != nil; k, id = c.Next() {
			v := ops.Get(id)
			if v == nil {
				continue
			}
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if !r.Op.State.Done() {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// get returns the record of id.
func (j *Journal) get(id string) (record, bool, error) {
	var r record
	var found bool
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketOps).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	return r, found, err
}

// recent returns up to n records, newest first (in the order they were created).
func (j *Journal) recent(n int) ([]record, error) {
	var out []record
	err := j.db.View(func(tx *bolt.Tx) error {
		ops := tx.Bucket(bucketOps)
		c := tx.Bucket(bucketOrder).Cursor()
		for k, id := c.Last(); k != nil && len(out) < n; k, id = c.Prev() {
			v := ops.Get(id)
			if v == nil {
				continue
			}
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// insert adds a new record; errExists if the id is taken.
func (j *Journal) insert(r *record) error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		ops := tx.Bucket(bucketOps)
		if ops.Get([]byte(r.Op.ID)) != nil {
			return errExists
		}
		seq, err := tx.Bucket(bucketOrder).NextSequence()
		if err != nil {
			return err
		}
		r.Seq = seq
		if err := tx.Bucket(bucketOrder).Put(seqKey(seq), []byte(r.Op.ID)); err != nil {
			return err
		}
		return putRecord(ops, *r)
	})
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.count++
	due := j.count > j.maxRecords || j.now().Sub(j.lastPrune) > 24*time.Hour
	j.mu.Unlock()
	if due {
		// Pruning failures only cost disk space; the operation itself is recorded.
		_ = j.prune()
	}
	return nil
}

// update rewrites an existing record, and with a Bootstrapper outcome also the server's last run.
func (j *Journal) update(r record) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		if err := putRecord(tx.Bucket(bucketOps), r); err != nil {
			return err
		}
		if r.Bootstrap == nil || r.Op.Finished == nil {
			return nil
		}
		run := protocol.BootstrapRun{
			OperationID:    r.Op.ID,
			Finished:       *r.Op.Finished,
			ExitCode:       r.Bootstrap.ExitCode,
			Succeeded:      r.Bootstrap.Succeeded,
			RebootRequired: r.Bootstrap.RebootRequired,
			BackupPool:     r.Bootstrap.BackupPool,
			NextSteps:      r.Bootstrap.NextSteps,
		}
		v, err := json.Marshal(run)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyLastBoot, v)
	})
}

// lastBootstrap returns the last Bootstrapper run that finished on this server, nil if none. It is
// kept apart from the operation records so pruning never forgets it.
func (j *Journal) lastBootstrap() (*protocol.BootstrapRun, error) {
	var run *protocol.BootstrapRun
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyLastBoot)
		if v == nil {
			return nil
		}
		run = &protocol.BootstrapRun{}
		return json.Unmarshal(v, run)
	})
	return run, err
}

// prune deletes finished records older than the retention and, above maxRecords, the oldest
// finished ones down to 90% of the limit (so a full journal does not prune on every insert).
func (j *Journal) prune() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.now()
	cutoff := now.Add(-j.retention)
	target := j.maxRecords
	if j.count > j.maxRecords {
		target = j.maxRecords - j.maxRecords/10
	}
	deleted := 0
	err := j.db.Update(func(tx *bolt.Tx) error {
		ops, order := tx.Bucket(bucketOps), tx.Bucket(bucketOrder)
		// Collect first, delete after: deleting under a bbolt cursor can skip the next key.
		var doomedSeq, doomedID [][]byte
		c := order.Cursor()
		for k, id := c.First(); k != nil; k, id = c.Next() {
			v := ops.Get(id)
			if v == nil { // dangling order entry
				doomedSeq = append(doomedSeq, bytes.Clone(k))
				continue
			}
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			over := j.count-len(doomedID) > target
			old := r.Op.Finished != nil && r.Op.Finished.Before(cutoff)
			if r.Op.State.Done() && (over || old) {
				doomedSeq = append(doomedSeq, bytes.Clone(k))
				doomedID = append(doomedID, bytes.Clone(id))
			}
		}
		for _, k := range doomedSeq {
			if err := order.Delete(k); err != nil {
				return err
			}
		}
		for _, id := range doomedID {
			if err := ops.Delete(id); err != nil {
				return err
			}
		}
		deleted = len(doomedID)
		return nil
	})
	if err != nil {
		return err
	}
	j.count -= deleted
	j.lastPrune = now
	return nil
}

func putRecord(b *bolt.Bucket, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.Op.ID), v)
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
