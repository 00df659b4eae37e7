package powershell

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// maxReplyLine bounds one stdout line; longer lines are cut and, if they were replies, fail the call.
	maxReplyLine = 4 << 20
	// stderrTailLines of the host's stderr are kept for the error of a host that died.
	stderrTailLines = 20
	// exitGrace is how long a dead host's readers get to hand over what it wrote before exiting.
	exitGrace = 2 * time.Second
	// stopGrace is how long Close waits for a host to exit after its stdin is closed.
	stopGrace = 5 * time.Second
)

// hostArgs start PowerShell reading commands from stdin, with nothing from the profile or the
// console that could change behaviour or prompt.
var hostArgs = []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass"}

// shell owns one long-lived PowerShell host of a Backend (its reads', or its writes'): it starts
// it lazily, serializes calls on it, and replaces it when it dies, times out or fails to start.
type shell struct {
	exe          string
	args         []string
	input        string // bootstrapInput(product)
	product      product
	productName  string
	startTimeout time.Duration
	callTimeout  time.Duration
	log          *slog.Logger

	sem chan struct{} // one call at a time; a channel so waiting honours ctx

	mu     sync.Mutex // guards cur and closed
	cur    *host
	closed bool
	starts int
}

func newShell(role, exe string, extraArgs []string, productName string, startTimeout, callTimeout time.Duration, log *slog.Logger) (*shell, error) {
	p, err := lookupProduct(productName)
	if err != nil {
		return nil, err
	}
	input, err := bootstrapInput(productName)
	if err != nil {
		return nil, err
	}
	args := append(append(append([]string{}, hostArgs...), extraArgs...), "-Command", "-")
	return &shell{
		exe: exe, args: args, input: input, product: p, productName: productName,
		startTimeout: startTimeout, callTimeout: callTimeout, log: log.With("host", role),
		sem: make(chan struct{}, 1),
	}, nil
}

// call runs op with params (marshalled to JSON) on the host and decodes the reply's result into
// out (nil to ignore it).
func (s *shell) call(ctx context.Context, op string, params, out any) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("powershell %s: waiting for the PowerShell host: %w", op, ctx.Err())
	}
	defer func() { <-s.sem }()
	begin := time.Now()
	err := s.callLocked(ctx, op, params, out)
	s.log.Debug("powershell call", "op", op, "duration", time.Since(begin), "error", err)
	return err
}

func (s *shell) callLocked(ctx context.Context, op string, params, out any) error {
	h, err := s.currentHost()
	if err != nil {
		return unavailable(op, "%v", err)
	}
	if err := s.waitReady(ctx, h, op); err != nil {
		return err
	}
	id := h.nextID()
	h.takeMalformed() // what came before this call is not its concern
	line, err := encodeRequest(id, op, params)
	if err != nil {
		return fmt.Errorf("powershell %s: encoding parameters: %w", op, err)
	}
	if _, err := h.stdin.Write(line); err != nil {
		s.discard(h, "writing the request failed")
		return unavailable(op, "writing to the PowerShell host: %v", err)
	}
	timeout := s.timeoutFor(op)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case r := <-h.replies:
			if done, err := s.handleReply(op, id, r, out); done {
				return err
			}
		case <-h.dead:
			// The host may have answered just before it exited: its readers have finished.
			for drained := false; !drained; {
				select {
				case r := <-h.replies:
					if done, err := s.handleReply(op, id, r, out); done {
						s.discard(h, "exited")
						return err
					}
				default:
					drained = true
				}
			}
			s.discard(h, "exited during a call")
			return unavailable(op, "the PowerShell host exited during the call (%s)%s", h.exitSummary(), h.takeMalformed())
		case <-ctx.Done():
			// The caller gave up, not the host: leave it running. Its late reply carries an old
			// id and the next call discards it.
			return fmt.Errorf("powershell %s: %w", op, ctx.Err())
		case <-timer.C:
			s.discard(h, "call timed out")
			return unavailable(op, "no reply within %s; the PowerShell host was stopped%s", timeout, h.takeMalformed())
		}
	}
}

// longCalls are the operations that may run longer than a call's timeout: Microsoft gives up to
// 60 minutes for a failback of 20,000 users. Killing the host at CallTimeout would leave a pool
// half failed over.
var longCalls = map[string]time.Duration{
	opFailoverPool: 2 * time.Hour,
	opFailbackPool: 2 * time.Hour,
	opFailoverCMS:  30 * time.Minute,
}

// timeoutFor is how long a call of op may take: CallTimeout, or longer for longCalls.
func (s *shell) timeoutFor(op string) time.Duration {
	if d, ok := longCalls[op]; ok && d > s.callTimeout {
		return d
	}
	return s.callTimeout
}

// handleReply reports whether r answers request id, and the call's outcome if it does.
func (s *shell) handleReply(op string, id int64, r wireReply, out any) (bool, error) {
	if r.oversized {
		return true, fmt.Errorf("powershell %s: reply longer than %d bytes", op, maxReplyLine)
	}
	if r.ID != id {
		s.log.Debug("powershell: discarding a reply to an abandoned call", "id", r.ID, "want", id)
		return false, nil
	}
	if r.malformed != "" {
		return true, fmt.Errorf("powershell %s: malformed reply: %s", op, r.malformed)
	}
	if !r.OK {
		we := r.Error
		if we == nil {
			we = &wireError{Message: "the PowerShell host reported a failure without details"}
		}
		return true, classify(op, we)
	}
	if out == nil {
		return true, nil
	}
	if err := decodeResult(r.Result, out); err != nil {
		return true, fmt.Errorf("powershell %s: decoding the result: %w", op, err)
	}
	return true, nil
}

// currentHost returns the live host, starting one if there is none.
func (s *shell) currentHost() (*host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("the backend is closed")
	}
	if s.cur != nil {
		select {
		case <-s.cur.dead:
			s.cur = nil
		default:
			return s.cur, nil
		}
	}
	s.starts++
	if s.starts > 1 {
		s.log.Info("restarting the PowerShell host", "product", s.productName, "starts", s.starts)
	}
	h, err := startHost(s.exe, s.args, s.input, s.log)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.exe, err)
	}
	s.cur = h
	return h, nil
}

// waitReady waits for the host's id 0 reply. A caller that gives up leaves the host starting, so
// a slow module import is not restarted by every impatient caller.
func (s *shell) waitReady(ctx context.Context, h *host, op string) error {
	select {
	case <-h.ready:
		return s.readyOutcome(h)
	default:
	}
	timer := time.NewTimer(time.Until(h.started.Add(s.startTimeout)))
	defer timer.Stop()
	select {
	case <-h.ready:
		return s.readyOutcome(h)
	case <-h.dead:
		select {
		case <-h.ready:
			return s.readyOutcome(h)
		default:
		}
		s.discard(h, "exited while starting")
		return unavailable(op, "the PowerShell host exited while starting (%s)%s", h.exitSummary(), h.takeMalformed())
	case <-ctx.Done():
		return fmt.Errorf("powershell %s: waiting for the PowerShell host to start: %w", op, ctx.Err())
	case <-timer.C:
		s.discard(h, "start timed out")
		return unavailable(op, "the PowerShell host did not load module %s within %s%s", s.product.module, s.startTimeout, h.takeMalformed())
	}
}

func (s *shell) readyOutcome(h *host) error {
	if h.readyErr == nil {
		return nil
	}
	s.discard(h, "module import failed")
	return importError(s.product, s.productName, h.readyErr)
}

// discard forgets h (the next call starts a new host) and kills it.
func (s *shell) discard(h *host, reason string) {
	s.mu.Lock()
	if s.cur == h {
		s.cur = nil
	}
	s.mu.Unlock()
	h.kill(reason)
}

// close stops the host: stdin closed (the script's loop ends), then killed if it lingers.
func (s *shell) close() {
	s.mu.Lock()
	s.closed = true
	h := s.cur
	s.cur = nil
	s.mu.Unlock()
	if h != nil {
		h.stop()
	}
}

// host is one powershell.exe process.
type host struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	log     *slog.Logger

	replies chan wireReply
	ready   chan struct{} // closed on the id 0 reply
	// readyErr is the id 0 reply's error (module import failed); set before ready is closed.
	readyErr *wireError
	dead     chan struct{} // closed when the process has exited and its output is read
	exitErr  error         // set before dead is closed
	stderr   lineTail

	lastID   int64 // guarded by shell.sem
	killOnce sync.Once

	badMu sync.Mutex
	bad   string // the last reply line that could not be read, for the error of a call that fails
}

// wireReply is one reply line after the marker (parseReply).
type wireReply struct {
	ID     int64
	OK     bool
	Result json.RawMessage
	Error  *wireError

	oversized bool
	malformed string // what is wrong with a reply to ID
}

type readyResult struct {
	Module    string `json:"module"`
	PSVersion string `json:"psVersion"`
}

func startHost(exe string, args []string, input string, log *slog.Logger) (*host, error) {
	cmd := exec.Command(exe, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipes rather than exec's copying: the readers stream lines as they come, and Wait
	// does not wait on a grandchild that inherited them.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return nil, err
	}
	outW.Close()
	errW.Close()
	h := &host{
		cmd: cmd, stdin: stdin, started: time.Now(), log: log.With("pid", cmd.Process.Pid),
		replies: make(chan wireReply, 64),
		ready:   make(chan struct{}),
		dead:    make(chan struct{}),
	}
	h.stderr.max = stderrTailLines
	h.log.Info("PowerShell host started", "exe", exe)
	stdoutDone := make(chan struct{})
	stderrDone := make(chan struct{})
	go h.readStdout(outR, stdoutDone)
	go h.readStderr(errR, stderrDone)
	go h.supervise(outR, errR, stdoutDone, stderrDone)
	// The script is bigger than a Windows pipe buffer: write it without holding up the caller.
	go func() {
		if _, err := io.WriteString(stdin, input); err != nil {
			h.log.Debug("PowerShell host: writing the bootstrap script failed", "error", err)
		}
	}()
	return h, nil
}

func (h *host) nextID() int64 {
	h.lastID++
	return h.lastID
}

// supervise waits for the process, lets the readers drain, then declares the host dead.
func (h *host) supervise(outR, errR *os.File, stdoutDone, stderrDone chan struct{}) {
	err := h.cmd.Wait()
	grace := time.NewTimer(exitGrace)
	defer grace.Stop()
	expired := false
	for _, done := range []chan struct{}{stdoutDone, stderrDone} {
		if expired {
			break
		}
		select {
		case <-done:
		case <-grace.C:
			expired = true
		}
	}
	outR.Close()
	errR.Close()
	h.exitErr = err
	h.log.Info("PowerShell host exited", "error", err, "uptime", time.Since(h.started).Round(time.Millisecond))
	close(h.dead)
}

func (h *host) readStdout(r io.Reader, done chan struct{}) {
	defer close(done)
	br := bufio.NewReaderSize(decodeOutput(r), 64<<10)
	readyDone := false
	for {
		line, tooLong, err := readBoundedLine(br, maxReplyLine)
		if len(line) > 0 || tooLong {
			h.handleLine(line, tooLong, &readyDone)
		}
		if err != nil {
			return
		}
	}
}

func (h *host) handleLine(line []byte, tooLong bool, readyDone *bool) {
	line = trimBOM(line)
	payload, isReply := bytes.CutPrefix(line, []byte(replyMarker))
	if !isReply {
		if len(bytes.TrimSpace(line)) > 0 {
			h.log.Debug("PowerShell host output", "line", printable(line, 512), "truncated", tooLong)
		}
		return
	}
	if tooLong {
		h.log.Warn("PowerShell host reply too long", "limit", maxReplyLine)
		h.deliver(wireReply{oversized: true})
		return
	}
	r, err := parseReply(payload)
	if err == nil && r.ID == 0 && r.malformed != "" {
		err = errors.New(r.malformed)
	}
	if err != nil {
		// Nobody to hand it to: kept for the error of a call that then fails.
		h.log.Debug("PowerShell host: ignoring a malformed reply line", "line", printable(line, 512), "error", err)
		h.badMu.Lock()
		h.bad = fmt.Sprintf("%v: %s", err, printable(line, 200))
		h.badMu.Unlock()
		return
	}
	if r.ID == 0 {
		// Only the first well-formed id 0 reply counts: it says whether the module loaded.
		if *readyDone || (!r.OK && r.Error == nil) {
			return
		}
		*readyDone = true
		if r.OK {
			var info readyResult
			_ = json.Unmarshal(r.Result, &info)
			h.log.Info("PowerShell host ready", "module", info.Module, "psVersion", info.PSVersion,
				"startup", time.Since(h.started).Round(time.Millisecond))
		} else {
			h.readyErr = r.Error
			h.log.Warn("PowerShell host could not import its module", "type", r.Error.Type, "message", r.Error.Message)
		}
		close(h.ready)
		return
	}
	h.deliver(r)
}

// takeMalformed forgets the last unreadable reply line, and says what it was ("" if none) for
// the error of a call that failed.
func (h *host) takeMalformed() string {
	h.badMu.Lock()
	defer h.badMu.Unlock()
	bad := h.bad
	h.bad = ""
	if bad == "" {
		return ""
	}
	return "; it last wrote a malformed reply line (" + bad + ")"
}

func (h *host) deliver(r wireReply) {
	select {
	case h.replies <- r:
	default:
		h.log.Warn("PowerShell host: dropping a reply nobody waits for", "id", r.ID)
	}
}

func (h *host) readStderr(r io.Reader, done chan struct{}) {
	defer close(done)
	br := bufio.NewReaderSize(decodeOutput(r), 16<<10)
	for {
		line, _, err := readBoundedLine(br, 16<<10)
		if len(bytes.TrimSpace(line)) > 0 {
			h.stderr.add(printable(line, 1024))
			h.log.Debug("PowerShell host stderr", "line", printable(line, 1024))
		}
		if err != nil {
			return
		}
	}
}

func (h *host) kill(reason string) {
	h.killOnce.Do(func() {
		select {
		case <-h.dead:
			return
		default:
		}
		h.log.Info("stopping the PowerShell host", "reason", reason)
		_ = h.cmd.Process.Kill()
	})
}

func (h *host) stop() {
	_ = h.stdin.Close()
	select {
	case <-h.dead:
	case <-time.After(stopGrace):
		h.kill("did not exit after stdin was closed")
		<-h.dead
	}
}

// exitSummary describes how a dead host ended: exit status and the end of its stderr.
func (h *host) exitSummary() string {
	s := "exit: "
	if h.exitErr != nil {
		s += h.exitErr.Error()
	} else {
		s += "status 0"
	}
	if tail := h.stderr.String(); tail != "" {
		s += "; stderr: " + tail
	}
	return s
}

// encodeRequest is one request line: JSON in printable ASCII only (DEL and non-ASCII escaped, as
// json.Marshal escapes the other control characters) so the console's input code page cannot
// alter it, ending in a newline. Text that is not UTF-8 is refused, not replaced.
func encodeRequest(id int64, op string, params any) ([]byte, error) {
	if params == nil {
		params = struct{}{}
	}
	// json.Marshal turns bytes that are not UTF-8 into U+FFFD: the host would act on other values
	// than the caller's. Refuse them instead (found by FuzzEncodeRequest).
	if !utf8.ValidString(op) {
		return nil, fmt.Errorf("operation %q is not valid UTF-8", op)
	}
	if err := validUTF8(reflect.ValueOf(params), "params"); err != nil {
		return nil, err
	}
	b, err := json.Marshal(struct {
		ID     int64  `json:"id"`
		Op     string `json:"op"`
		Params any    `json:"params"`
	}{id, op, params})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, r := range string(b) {
		switch {
		case r < 0x7f: // json.Marshal has escaped the control characters below 0x20
			out.WriteByte(byte(r))
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// validUTF8 says which string in v (a value to marshal: strings, maps, slices, structs, pointers,
// interfaces) is not valid UTF-8.
func validUTF8(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return fmt.Errorf("%s is not valid UTF-8: %q", path, v.String())
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return validUTF8(v.Elem(), path)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := validUTF8(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if err := validUTF8(it.Key(), path+" key"); err != nil {
				return err
			}
			if err := validUTF8(it.Value(), fmt.Sprintf("%s[%q]", path, it.Key())); err != nil {
				return err
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				if err := validUTF8(v.Field(i), path+"."+v.Type().Field(i).Name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// readBoundedLine reads one line without its line ending, keeping at most limit bytes; tooLong
// says the rest was dropped.
func readBoundedLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > limit {
			tooLong = true
			if room := limit - len(line); room > 0 {
				line = append(line, chunk[:room]...)
			}
		} else {
			line = append(line, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		line = bytes.TrimRight(line, "\r\n")
		return line, tooLong, err
	}
}

// printable makes a log-safe string of at most n bytes.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// lineTail keeps the last max lines written to it.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " / ")
}
