// Package doctor holds what `lync-agent doctor` reports, and the checks that need no Lync.
//
// A Check is one assumption about the server the agent runs on, judged PASS, FAIL or UNKNOWN,
// with what was seen and, when it did not pass, what to do. Reports are written as lines for a
// console or as JSON for a bug report, with the values that identify the organisation (FQDNs,
// user and domain names, SIDs) masked by a Masker unless the administrator asks to see them.
//
// The checks here are the agent's own configuration: its TLS files (CheckTLS, CheckServerName),
// its listen address (CheckListen) and its journal directory (CheckJournal). The Lync checks are
// powershell.Diagnose. `lync-agent serve` can run the same functions at startup.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is a check's outcome.
type Status string

const (
	// Pass: the server matches what the agent assumes.
	Pass Status = "PASS"
	// Fail: it does not; the agent would fail or misread the server. Fix says what to do.
	Fail Status = "FAIL"
	// Unknown: the doctor could not tell (the cmdlet did not answer, or the server is not in a
	// state that shows it, such as an unpaired pool). Fix says how to find out.
	Unknown Status = "UNKNOWN"
)

// Check is one assumption, judged.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Saw is what the doctor saw, in one sentence.
	Saw string `json:"saw"`
	// Fix is what to do, for FAIL and UNKNOWN.
	Fix string `json:"fix,omitempty"`
	// Assumption is what the agent assumes that this check tests (for a bug report).
	Assumption string `json:"assumption,omitempty"`
}

// Passed, Failed and Unknowns build checks.
func Passed(name, saw string) Check { return Check{Name: name, Status: Pass, Saw: saw} }

// Failed is a FAIL with what to do.
func Failed(name, saw, fix string) Check { return Check{Name: name, Status: Fail, Saw: saw, Fix: fix} }

// Unknowns is an UNKNOWN with how to find out.
func Unknowns(name, saw, fix string) Check {
	return Check{Name: name, Status: Unknown, Saw: saw, Fix: fix}
}

// About sets the check's Assumption.
func (c Check) About(assumption string) Check {
	c.Assumption = assumption
	return c
}

// Summary counts the checks by status.
type Summary struct {
	Pass    int `json:"pass"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
}

// Summarize counts checks by status.
func Summarize(checks []Check) Summary {
	var s Summary
	for _, c := range checks {
		switch c.Status {
		case Pass:
			s.Pass++
		case Fail:
			s.Fail++
		default:
			s.Unknown++
		}
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("%d PASS, %d FAIL, %d UNKNOWN", s.Pass, s.Fail, s.Unknown)
}

// Report is a whole run, as --json writes it.
type Report struct {
	Tool         string    `json:"tool"`
	AgentVersion string    `json:"agentVersion"`
	Product      string    `json:"product"`
	OS           string    `json:"os"`
	Time         time.Time `json:"time"`
	// Masked is true when identifying values were masked (no --show-values).
	Masked bool `json:"masked"`
	// Incomplete says why the Lync checks could not be made (PowerShell did not run); "" when
	// they were.
	Incomplete string  `json:"incomplete,omitempty"`
	Checks     []Check `json:"checks"`
	Summary    Summary `json:"summary"`
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r Report) error {
	r.Summary = Summarize(r.Checks)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes one line per check: status, name, what was seen and, when it did not pass,
// "-> what to do".
func WriteText(w io.Writer, checks []Check) error {
	width := 0
	for _, c := range checks {
		width = max(width, len(c.Name))
	}
	for _, c := range checks {
		line := fmt.Sprintf("%-7s %-*s  %s", c.Status, width, c.Name, oneLine(c.Saw))
		if c.Fix != "" && c.Status != Pass {
			line += " -> " + oneLine(c.Fix)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// oneLine keeps a check on its line: what a cmdlet said may hold line breaks.
func oneLine(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(strings.TrimSpace(s))
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}
