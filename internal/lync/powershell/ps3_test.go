package powershell

// Lync Server 2013 runs on Windows PowerShell 3.0. Every script text this package sends (each
// product's bootstrap input, and every PowerShell string literal of its Go files, the doctor's
// included) may use only what 3.0 has. The rules below are what later versions added and a
// script writer reaches for; comments and string literals are blanked first, so a message that
// names a construct does not trip them.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// ps3Rule is a construct Windows PowerShell 3.0 lacks, matched in code (comments and strings blanked).
type ps3Rule struct {
	what string // the construct and the version that added it
	re   *regexp.Regexp
}

var ps3Rules = []ps3Rule{
	{"::new() (PowerShell 5.0; use New-Object)", regexp.MustCompile(`(?i)::\s*new\s*\(`)},
	{"?. or ?[] null-conditional (PowerShell 7.1)", regexp.MustCompile(`\?\.|\?\[`)},
	{"?? or ??= null-coalescing (PowerShell 7.0)", regexp.MustCompile(`\?\?`)},
	{"class definition (PowerShell 5.0)", regexp.MustCompile(`(?im)^\s*class\s+\w`)},
	{"enum definition (PowerShell 5.0)", regexp.MustCompile(`(?im)^\s*enum\s+\w`)},
	{"-AsHashtable (PowerShell 6.0)", regexp.MustCompile(`(?i)-AsHashtable\b`)},
	{"using namespace/module/assembly (PowerShell 5.0)", regexp.MustCompile(`(?im)^\s*using\s+(namespace|module|assembly)\b`)},
	{"ConvertFrom-Json -Depth (PowerShell 6.2)", regexp.MustCompile(`(?i)ConvertFrom-Json\b[^\n|;]*\s-Depth\b`)},
	{"Get-Error (PowerShell 7.0)", regexp.MustCompile(`(?i)\bGet-Error\b`)},
	{"ForEach-Object -Parallel (PowerShell 7.0)", regexp.MustCompile(`(?i)(\bForEach-Object|\bforeach|%)\s+-Parallel\b`)},
	{"&& or || pipeline chain (PowerShell 7.0)", regexp.MustCompile(`&&|\|\|`)},
	{".Where() or .ForEach() method (PowerShell 4.0)", regexp.MustCompile(`(?i)\.(Where|ForEach)\s*\(`)},
	{"-PipelineVariable (PowerShell 4.0)", regexp.MustCompile(`(?i)\s-(PipelineVariable|pv)\b`)},
	{"Write-Output -NoEnumerate (PowerShell 4.0)", regexp.MustCompile(`(?i)Write-Output\b[^\n|;]*\s-NoEnumerate\b`)},
	{"a cmdlet added after PowerShell 3.0", regexp.MustCompile(`(?i)\b(Get-FileHash|New-TemporaryFile|Compress-Archive|Expand-Archive|Get-Clipboard|Set-Clipboard|ConvertFrom-String|Format-Hex|Get-Uptime|Test-Json|Join-String|ConvertTo-Csv\s[^\n|;]*-NoHeader)\b`)},
	{"-AsByteStream or -ErrorAction Break (PowerShell 6.0+)", regexp.MustCompile(`(?i)-AsByteStream\b|-ErrorAction\s+Break\b`)},
	{"$PSStyle (PowerShell 7.2)", regexp.MustCompile(`(?i)\$PSStyle\b`)},
	{"#requires -Version above 3", regexp.MustCompile(`(?im)^#requires\s+-version\s+[4-9]`)},
}

// ps3Problem is one construct found: the line (1-based) and what it is.
type ps3Problem struct {
	line int
	what string
	text string
}

// ps3Check finds what script uses that Windows PowerShell 3.0 lacks.
func ps3Check(script string) []ps3Problem {
	code := psCode(script)
	lines := strings.Split(script, "\n")
	var out []ps3Problem
	add := func(offset int, what string) {
		n := strings.Count(script[:offset], "\n")
		out = append(out, ps3Problem{line: n + 1, what: what, text: strings.TrimSpace(lines[n])})
	}
	for _, r := range ps3Rules {
		src := code
		if strings.HasPrefix(r.what, "#requires") {
			src = script // a directive in a comment
		}
		for _, m := range r.re.FindAllStringIndex(src, -1) {
			add(m[0], r.what)
		}
	}
	// A ? left in code is Where-Object's alias (after a pipe) or, anywhere else, a ternary
	// (PowerShell 7.0). ?? and ?. are the rules' above.
	for i := 0; i < len(code); i++ {
		if code[i] != '?' || (i+1 < len(code) && strings.ContainsRune("?.[", rune(code[i+1]))) || (i > 0 && code[i-1] == '?') {
			continue
		}
		before := strings.TrimRight(code[:i], " \t")
		if strings.HasSuffix(before, "|") || strings.HasSuffix(before, "$") || strings.HasSuffix(before, "{") && strings.HasSuffix(strings.TrimRight(before[:len(before)-1], " \t"), "$") {
			continue // | ? { }, the variable $?
		}
		add(i, "a ? b : c ternary (PowerShell 7.0)")
	}
	return out
}

// psCode is script with its comments and string literals replaced by spaces (newlines kept, so
// offsets and line numbers stay): what is left is code.
func psCode(script string) string {
	b := []byte(script)
	blank := func(from, to int) {
		for i := from; i < to && i < len(b); i++ {
			if b[i] != '\n' {
				b[i] = ' '
			}
		}
	}
	for i := 0; i < len(b); {
		switch {
		case strings.HasPrefix(script[i:], "<#"):
			end := strings.Index(script[i+2:], "#>")
			if end < 0 {
				end = len(script) - i - 2
			}
			blank(i, i+2+end+2)
			i += 2 + end + 2
		case b[i] == '#' && (i == 0 || strings.ContainsRune(" \t\n;{(", rune(script[i-1]))):
			end := strings.IndexByte(script[i:], '\n')
			if end < 0 {
				end = len(script) - i
			}
			blank(i, i+end)
			i += end
		case strings.HasPrefix(script[i:], "@'") || strings.HasPrefix(script[i:], `@"`):
			closer := "\n" + string(script[i+1]) + "@"
			end := strings.Index(script[i+2:], closer)
			if end < 0 {
				end = len(script) - i - 2
			}
			blank(i, i+2+end+len(closer))
			i += 2 + end + len(closer)
		case b[i] == '\'':
			j := i + 1
			for j < len(b) {
				if b[j] == '\'' {
					if j+1 < len(b) && b[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			blank(i, j+1)
			i = j + 1
		case b[i] == '"':
			j := i + 1
			for j < len(b) {
				if b[j] == '`' {
					j += 2
					continue
				}
				if b[j] == '"' {
					if j+1 < len(b) && b[j+1] == '"' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			blank(i, j+1)
			i = j + 1
		default:
			i++
		}
	}
	return string(b)
}

func TestScriptsUseOnlyPowerShell3(t *testing.T) {
	// Each product's bootstrap input, as the hosts receive it (line numbers are the reviewed copy's).
	for product := range wantModule {
		input, err := bootstrapInput(product)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps3Check(input) {
			t.Errorf("%s:%d: %s: %s", filepath.Join("testdata", goldenName(product)), p.line, p.what, p.text)
		}
	}
	// Every PowerShell text in the package's Go files, where it is written.
	n := 0
	for _, lit := range powerShellLiterals(t) {
		n++
		for _, p := range ps3Check(lit.text) {
			line := lit.line
			if lit.raw {
				line += p.line - 1
			}
			t.Errorf("%s:%d: %s: %s", lit.file, line, p.what, p.text)
		}
	}
	if n < 5 {
		t.Errorf("found %d PowerShell literals in the package's Go files; the scan is broken", n)
	}
	t.Logf("checked %d PowerShell literals", n)
}

type psLiteral struct {
	file string
	line int  // of the literal's start
	raw  bool // a `raw` literal: its lines are the source's
	text string
}

// psLooks tells PowerShell text from Go messages: a variable and more than one statement.
var psLooks = regexp.MustCompile(`\$[A-Za-z_]\w*`)

// powerShellLiterals are the string literals of the package's non-test Go files that hold
// PowerShell.
func powerShellLiterals(t *testing.T) []psLiteral {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []psLiteral
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			text, err := strconv.Unquote(lit.Value)
			if err != nil || !psLooks.MatchString(text) || !(strings.Contains(text, "\n") || strings.Contains(text, "; ")) {
				return true
			}
			out = append(out, psLiteral{file: name, line: fset.Position(lit.Pos()).Line, raw: lit.Value[0] == '`', text: text})
			return true
		})
	}
	return out
}

// The checker catches each construct, in code only.
func TestPowerShell3Checker(t *testing.T) {
	bad := map[string]string{
		"$sb = [System.Text.StringBuilder]::new()": "::new()",
		"$x = $a?.Name":           "null-conditional",
		"$x = $a?[0]":             "null-conditional",
		"$x = $a ?? 'none'":       "null-coalescing",
		"$x ??= 1":                "null-coalescing",
		"$x = $ok ? 'yes' : 'no'": "ternary",
		"class Agent {\n}":        "class",
		"  enum Kind { A }":       "enum",
		"$o = $line | ConvertFrom-Json -AsHashtable":     "-AsHashtable",
		"using namespace System.Text":                    "using",
		"$o = ConvertFrom-Json -InputObject $l -Depth 5": "ConvertFrom-Json -Depth",
		"Get-Error":                                                               "Get-Error",
		"1..3 | ForEach-Object -Parallel { $_ }":                                  "-Parallel",
		"Get-CsPool && Enable-CsTopology":                                         "pipeline chain",
		"Get-CsPool || throw 'x'":                                                 "pipeline chain",
		"$a = @(1,2).Where({ $_ -gt 1 })":                                         ".Where()",
		"Get-CsPool -PipelineVariable p | Out-Null":                               "-PipelineVariable",
		"#requires -Version 5.1\nGet-CsPool":                                      "#requires",
		"$h = Get-FileHash -Path $p":                                              "after PowerShell 3.0",
		"Write-Output -NoEnumerate $list":                                         "-NoEnumerate",
		"foreach ($i in 1..2) { $x = ($i -gt 1) ? 1 : 2 }":                        "ternary",
		"$t = \"a\" + ($b ?? 'c')":                                                "null-coalescing",
		"Set-Content -Path $p -Value $b -AsByteStream":                            "-AsByteStream",
		"if ($?) { $x = $y ? $z : 0 }":                                            "ternary",
		"$x = 'it''s' + ([Text.Encoding]::UTF8)::new":                             "",
		"Remove-Item $p -ErrorAction Break":                                       "-ErrorAction Break",
		"$e = $PSStyle.Reset":                                                     "$PSStyle",
		"$r = Get-CsPool | ? { $_.Fqdn -eq $f } | % { $_ }":                       "",
		"# class Foo\n$x = 'a ?? b' # ?. &&":                                      "",
		"$m = \"?? and `\" ?. and $($a)\"; <# a ? b : c #>":                       "",
		"$j = ConvertTo-Json -InputObject $r -Depth 8":                            "",
		"if (-not $?) { throw 'x' }":                                              "",
		"$h = @'\nclass X {}\n$a ?? $b\n'@\n$y = 1":                               "",
		"$wmi = Get-WmiObject -Class Win32_Service -Filter \"Name='LYNCBACKUP'\"": "",
	}
	for script, want := range bad {
		got := ps3Check(script)
		switch {
		case want == "" && len(got) > 0:
			t.Errorf("%q: found %+v in valid PowerShell 3.0", script, got)
		case want != "" && len(got) == 0:
			t.Errorf("%q: not found (want %s)", script, want)
		case want != "" && !strings.Contains(fmt.Sprint(got), want):
			t.Errorf("%q: found %+v, want %s", script, got, want)
		}
	}
	if p := ps3Check("$a = 1\n$b = 2\n$c = $a ?? $b\n"); len(p) != 1 || p[0].line != 3 || p[0].text != "$c = $a ?? $b" {
		t.Errorf("line numbers: %+v", p)
	}
}
