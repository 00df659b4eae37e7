package powershell

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// What arrives from the host is checked, not trusted: the script always writes every key of its
// answers, casts strings with [string] (never null) and writes one UTF-8 JSON object per reply
// line. Anything else is a broken host or script, and the call fails naming what was wrong
// rather than reading a missing backup pool as "unpaired" or a null result as "not installed".

// parseReply reads the JSON after the marker. A reply with a usable id whose envelope is wrong
// comes back with malformed set, so it fails the call it answers; without a usable id, an error.
func parseReply(payload []byte) (wireReply, error) {
	var env struct {
		ID     *int64          `json:"id"`
		OK     *bool           `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		var idOnly struct {
			ID int64 `json:"id"`
		}
		if json.Unmarshal(payload, &idOnly) == nil && idOnly.ID > 0 {
			msg := err.Error()
			if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field != "" {
				msg = fmt.Sprintf("%q is a JSON %s, want a %s", te.Field, te.Value, te.Type)
			}
			return wireReply{ID: idOnly.ID, malformed: msg}, nil
		}
		return wireReply{}, err
	}
	if env.ID == nil {
		return wireReply{}, errors.New(`no "id"`)
	}
	r := wireReply{ID: *env.ID, Result: env.Result}
	switch {
	case env.OK == nil:
		r.malformed = `no "ok"`
	case *env.OK:
		r.OK = true
	case len(env.Error) > 0 && string(env.Error) != "null":
		var we wireError
		if err := json.Unmarshal(env.Error, &we); err != nil {
			r.malformed = fmt.Sprintf(`"error": %v`, err)
		} else {
			r.Error = &we
		}
	}
	return r, nil
}

// decodeResult decodes a reply's result into out, a pointer to a struct: see decodeObject.
func decodeResult(raw json.RawMessage, out any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return errors.New("the reply has no result")
	}
	return decodeObject(raw, out)
}

// decodeObject decodes a JSON object into out, a pointer to a struct, field by field: every
// json-tagged field's key must be there; null leaves a field zero, except a string, bool or
// number (the script never sends null for those); an error names its key.
func decodeObject(raw []byte, out any) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return fmt.Errorf("not an object: %s", printable(raw, 80))
	}
	v := reflect.ValueOf(out).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if key == "" || key == "-" {
			continue
		}
		val, ok := obj[key]
		if !ok {
			return fmt.Errorf("no %q", key)
		}
		if string(val) == "null" {
			switch f.Type.Kind() {
			case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
				return fmt.Errorf("%q is null", key)
			}
			continue
		}
		if err := json.Unmarshal(val, v.Field(i).Addr().Interface()); err != nil {
			return fmt.Errorf("%q: %w", key, err)
		}
	}
	return nil
}

// utf8BOM starts a line where .NET wrote the preamble of an OutputEncoding that has one.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// decodeOutput reads the host's output as UTF-8, whatever it was written in: the script asks for
// UTF-8, but where setting [Console]::OutputEncoding fails (no console), output stays in the
// encoding the process started with, which can be UTF-16. UTF-16 is told by its BOM, or by a
// NUL byte beside an ASCII one (the first character is ASCII: a marker, a banner).
func decodeOutput(r io.Reader) io.Reader {
	br := bufio.NewReader(r)
	head, _ := br.Peek(2)
	if len(head) < 2 {
		return br
	}
	switch {
	case head[0] == 0xFF && head[1] == 0xFE:
		_, _ = br.Discard(2)
		return &utf16Reader{src: br, order: binary.LittleEndian}
	case head[0] == 0xFE && head[1] == 0xFF:
		_, _ = br.Discard(2)
		return &utf16Reader{src: br, order: binary.BigEndian}
	case head[0] != 0 && head[1] == 0:
		return &utf16Reader{src: br, order: binary.LittleEndian}
	case head[0] == 0 && head[1] != 0:
		return &utf16Reader{src: br, order: binary.BigEndian}
	}
	return br
}

// utf16Reader turns a UTF-16 stream into UTF-8; what does not decode becomes U+FFFD.
type utf16Reader struct {
	src   *bufio.Reader
	order binary.ByteOrder
	out   []byte // decoded, not yet read
	high  rune   // a high surrogate waiting for its pair, or 0
	err   error
}

func (u *utf16Reader) Read(p []byte) (int, error) {
	for len(u.out) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		u.fill()
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	return n, nil
}

// fill decodes one code unit, waiting for it, then what is already buffered.
func (u *utf16Reader) fill() {
	var unit [2]byte
	for first := true; first || u.src.Buffered() >= 2; first = false {
		if _, err := io.ReadFull(u.src, unit[:]); err != nil {
			if u.high != 0 || err == io.ErrUnexpectedEOF { // a lone surrogate or an odd byte at the end
				u.out = utf8.AppendRune(u.out, utf8.RuneError)
				u.high = 0
			}
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			u.err = err
			return
		}
		c := rune(u.order.Uint16(unit[:]))
		switch {
		case c >= 0xD800 && c < 0xDC00:
			if u.high != 0 {
				u.out = utf8.AppendRune(u.out, utf8.RuneError)
			}
			u.high = c
		case c >= 0xDC00 && c < 0xE000:
			if u.high != 0 {
				u.out = utf8.AppendRune(u.out, utf16.DecodeRune(u.high, c))
			} else {
				u.out = utf8.AppendRune(u.out, utf8.RuneError)
			}
			u.high = 0
		default:
			if u.high != 0 {
				u.out = utf8.AppendRune(u.out, utf8.RuneError)
				u.high = 0
			}
			u.out = utf8.AppendRune(u.out, c)
		}
	}
}

// trimBOM drops a UTF-8 BOM at the start of a line.
func trimBOM(line []byte) []byte { return bytes.TrimPrefix(line, utf8BOM) }
