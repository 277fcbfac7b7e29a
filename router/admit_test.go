package router

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lumengw/lumen/providers"
)

// admitter is a Call.Admit that refuses the groups in full and records
// every group it is asked about.
type admitter struct {
	full  []string
	mu    sync.Mutex
	asked []string
}

var errFull = errors.New("window full")

func (a *admitter) admit(_ context.Context, group string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, group)
	if slices.Contains(a.full, group) {
		return errFull
	}
	return nil
}

func answeredBy(res *Result) string {
	if res == nil {
		return ""
	}
	return res.Group
}

// Call.Admit is asked for every group the router turns to, the one the
// client named first: a fallback it refuses is passed over like one Skip
// names, an auto choice it refuses is decided again without it, and an
// auto route it leaves with no group ends with its refusal.
func TestAdmitFallbacks(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		full      []string
		wantGroup string // "" when the call fails with main's error
		asked     []string
	}{
		{name: "admitted fallback answers", wantGroup: "second", asked: []string{"main", "second"}},
		{name: "a refused fallback is passed over", full: []string{"second"}, wantGroup: "third", asked: []string{"main", "second", "third"}},
		{name: "every fallback refused: the group's own error", full: []string{"second", "third"}, asked: []string{"main", "second", "third"}},
		{name: "the request's own list", body: `,"models":["main","third","second"]`, full: []string{"third"},
			wantGroup: "second", asked: []string{"main", "third", "second"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			second, third := answers(`{}`), answers(`{}`)
			r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": failing(dead), "second": second, "third": third})
			a := &admitter{full: tt.full}
			call := chat("main", false, tt.body)
			call.Admit = a.admit
			res, err := r.Do(context.Background(), call)
			switch {
			case tt.wantGroup == "" && (err == nil || !errors.Is(err, dead)):
				t.Fatalf("err %v, want main's %v", err, dead)
			case tt.wantGroup != "" && (err != nil || res.Group != tt.wantGroup):
				t.Fatalf("answered by %q (err %v), want %s", answeredBy(res), err, tt.wantGroup)
			}
			if !slices.Equal(a.asked, tt.asked) {
				t.Fatalf("Admit asked for %v, want %v", a.asked, tt.asked)
			}
			for name, f := range map[string]*fake{"second": second, "third": third} {
				if slices.Contains(tt.full, name) && f.Calls() != 0 {
					t.Fatalf("%s was refused by Admit but called %d times", name, f.Calls())
				}
			}
			// A failure after refusals carries them, for the client to
			// learn why no fallback answered.
			var fr *FallbacksRefusedError
			if tt.wantGroup == "" && (!errors.As(err, &fr) || len(fr.Refused) != len(tt.full) || !errors.Is(fr.Refused[0], errFull)) {
				t.Fatalf("err %#v, want a FallbacksRefusedError with %d refusals", err, len(tt.full))
			}
		})
	}
}

// A group the client named that Call.Admit refuses (its rate window is
// full) is not tried: its fallbacks take the request, each admitted in
// turn, as after a failure of the group; with none admitted, or none
// configured, the call ends with the group's refusal, carrying the
// fallbacks' refusals.
func TestAdmitRefusedGroupFallsBack(t *testing.T) {
	tests := []struct {
		name      string
		group     string
		body      string
		full      []string
		wantGroup string // "" when the call fails with the group's refusal
		refused   int    // the fallbacks' refusals the failure carries
		asked     []string
	}{
		{name: "first fallback answers", group: "main", full: []string{"main"}, wantGroup: "second", asked: []string{"main", "second"}},
		{name: "a full fallback is passed over", group: "main", full: []string{"main", "second"}, wantGroup: "third",
			asked: []string{"main", "second", "third"}},
		{name: "every fallback full", group: "main", full: []string{"main", "second", "third"}, refused: 2,
			asked: []string{"main", "second", "third"}},
		{name: "no fallbacks", group: "second", full: []string{"second"}, asked: []string{"second"}},
		{name: "the request says no fallbacks", group: "main", body: `,"fallbacks":[]`, full: []string{"main"}, asked: []string{"main"}},
		{name: "the request's own list", group: "main", body: `,"fallbacks":["third"]`, full: []string{"main"}, wantGroup: "third",
			asked: []string{"main", "third"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakes := map[string]*fake{"main": answers(`{}`), "second": answers(`{}`), "third": answers(`{}`)}
			r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": fakes["main"], "second": fakes["second"], "third": fakes["third"]})
			a := &admitter{full: tt.full}
			call := chat(tt.group, false, tt.body)
			call.Admit = a.admit
			res, err := r.Do(context.Background(), call)
			var fr *FallbacksRefusedError
			switch {
			case tt.wantGroup != "" && (err != nil || res.Group != tt.wantGroup || res.FallbackFrom != tt.group):
				t.Fatalf("answered by %q from %q (err %v), want %s from %s", answeredBy(res), res.FallbackFrom, err, tt.wantGroup, tt.group)
			case tt.wantGroup == "" && tt.refused == 0 && err != errFull:
				t.Fatalf("err %#v, want the group's own refusal", err)
			case tt.wantGroup == "" && tt.refused > 0 && (!errors.As(err, &fr) || fr.Err != errFull || len(fr.Refused) != tt.refused):
				t.Fatalf("err %#v, want the group's refusal with %d fallbacks'", err, tt.refused)
			}
			if !slices.Equal(a.asked, tt.asked) {
				t.Fatalf("Admit asked for %v, want %v", a.asked, tt.asked)
			}
			for name, f := range fakes {
				want := 0
				if name == tt.wantGroup {
					want = 1
				}
				if f.Calls() != want {
					t.Fatalf("%s called %d times, want %d", name, f.Calls(), want)
				}
			}
		})
	}
}

// A fallback Call.Skip names (its budget is spent) is passed over, and a
// call that then fails carries Skip's reason with Admit's refusals, in
// the order the fallbacks came up, for the client to learn why no
// fallback answered.
func TestSkippedFallbacksAreReported(t *testing.T) {
	errSpent := errors.New("budget spent")
	for _, tt := range []struct {
		name    string
		skip    []string
		full    []string
		refused []error
	}{
		{name: "every fallback skipped", skip: []string{"second", "third"}, refused: []error{errSpent, errSpent}},
		{name: "one skipped, one refused", skip: []string{"third"}, full: []string{"second"}, refused: []error{errFull, errSpent}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			second, third := answers(`{}`), answers(`{}`)
			r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": failing(dead), "second": second, "third": third})
			a := &admitter{full: tt.full}
			call := chat("main", false, "")
			call.Admit = a.admit
			call.Skip = func(group string) error {
				if slices.Contains(tt.skip, group) {
					return errSpent
				}
				return nil
			}
			_, err := r.Do(context.Background(), call)
			var fr *FallbacksRefusedError
			if !errors.Is(err, dead) || !errors.As(err, &fr) || len(fr.Refused) != len(tt.refused) {
				t.Fatalf("err %v, want main's %v with %d reasons", err, dead, len(tt.refused))
			}
			for i, want := range tt.refused {
				if !errors.Is(fr.Refused[i], want) {
					t.Errorf("reason %d is %v, want %v", i, fr.Refused[i], want)
				}
			}
			if second.Calls()+third.Calls() != 0 {
				t.Errorf("fallbacks called %d and %d times, want none", second.Calls(), third.Calls())
			}
			for _, name := range tt.skip {
				if slices.Contains(a.asked, name) {
					t.Errorf("Admit asked for %s, which Skip names (asked %v)", name, a.asked)
				}
			}
		})
	}
}

// A group given up, every deployment cooled down, for a fallback that
// Admit then refuses is tried anyway on the deployment that comes back
// soonest, as a group without fallbacks is: the request is not refused
// with nothing tried.
func TestAdmitRefusedFallbacksOfCooledDownGroup(t *testing.T) {
	for _, mainUp := range []bool{true, false} {
		mainFake := answers(`{}`)
		if !mainUp {
			mainFake = failing(dead)
		}
		r, _ := newTestRouter(t, fallbackGroups, map[string]providers.Provider{"main": mainFake})
		g, _ := r.Group("main")
		g.Deployments[0].health.until = r.now().Add(time.Minute) // cooled down
		g.Deployments[0].health.tripped.Store(true)
		a := &admitter{full: []string{"second", "third"}}
		call := chat("main", false, "")
		call.Admit = a.admit
		res, err := r.Do(context.Background(), call)
		if mainFake.Calls() == 0 {
			t.Fatalf("main up %v: main not called (err %v)", mainUp, err)
		}
		var fr *FallbacksRefusedError
		switch {
		case mainUp && (err != nil || res.Group != "main"):
			t.Fatalf("answered by %q (err %v), want main", answeredBy(res), err)
		case !mainUp && (!errors.Is(err, dead) || !errors.As(err, &fr) || len(fr.Refused) != 2):
			t.Fatalf("err %v, want main's %v with two refusals", err, dead)
		}
		if !slices.Equal(a.asked, []string{"main", "second", "third"}) {
			t.Fatalf("Admit asked for %v, want [main second third]", a.asked)
		}
	}
}

func TestAdmitAutoChoice(t *testing.T) {
	tests := []struct {
		name  string
		full  []string
		want  string // group called; "" when the call fails with errFull
		asked []string
	}{
		{name: "admitted choice", want: "cheap", asked: []string{"cheap"}},
		{name: "refused choice: decided again without it", full: []string{"cheap"}, want: "strong", asked: []string{"cheap", "strong"}},
		{name: "every candidate refused", full: []string{"cheap", "strong"}, asked: []string{"cheap", "strong"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ups := autoRouter(t, autoYAML)
			a := &admitter{full: tt.full}
			res, err := r.Do(context.Background(), &Call{Group: "auto", Op: providers.OpChat, Body: autoChat(easyPrompt, ""), RequestID: "r1", Admit: a.admit})
			if tt.want == "" {
				if !errors.Is(err, errFull) || ups["cheap-model"].calls()+ups["strong-model"].calls() != 0 {
					t.Fatalf("err %v, want the refusal and no upstream call", err)
				}
			} else if err != nil || res.Group != tt.want || res.Auto == nil || res.Auto.Selected != tt.want {
				t.Fatalf("answered by %q (err %v), want %s", answeredBy(res), err, tt.want)
			}
			if !slices.Equal(a.asked, tt.asked) {
				t.Fatalf("Admit asked for %v, want %v", a.asked, tt.asked)
			}
		})
	}
}

// A stream that breaks mid-answer turns to a fallback group only if Admit
// lets it.
func TestAdmitMidstreamFailover(t *testing.T) {
	for _, full := range []bool{false, true} {
		a := streams("a", reset, "<role>", "Hello", " from", " fake")
		c := streams("c", io.EOF, "<role>", " stream!", "<stop>")
		r, _ := newTestRouter(t, failoverConfig+"}\n", map[string]providers.Provider{"a": a, "c": c})
		ad := &admitter{}
		if full {
			ad.full = []string{"h"}
		}
		call := chat("solo", true, "")
		call.Admit = ad.admit
		res, err := r.Do(context.Background(), call)
		if err != nil {
			t.Fatal(err)
		}
		text, _, _, err := drainText(t, res.Stream)
		if full && (err == nil || c.Calls() != 0) || !full && (err != nil || text != "Hello from fake stream!") {
			t.Fatalf("h full %v: text %q, err %v, h called %d times", full, text, err, c.Calls())
		}
		if !slices.Equal(ad.asked, []string{"solo", "h"}) {
			t.Fatalf("Admit asked for %v, want [solo h]", ad.asked)
		}
	}
}
