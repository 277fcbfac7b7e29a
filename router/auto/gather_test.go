package auto

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGatherFastMatchesGather checks the assembly kernel against the Go
// loop for every block count it has (strides 8..40 cover 1–4 blocks and a
// second pass) and for an empty prompt.
func TestGatherFastMatchesGather(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2/FMA on this CPU (or not amd64): only the Go loop runs")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const bits = 10
	mask := uint32(1)<<bits - 1
	var scale [16]float32
	for ns := 1; ns < numNS; ns++ {
		scale[ns] = rng.Float32()
	}
	for _, stride := range []int{8, 16, 24, 32, 40} {
		table := make([]float32, (1<<bits)*stride)
		for i := range table {
			table[i] = rng.Float32()*2 - 1
		}
		for _, n := range []int{0, 1, 7, 2000} {
			feats := make([]uint32, n)
			for i := range feats {
				feats[i] = uint32(1+rng.IntN(numNS-1))<<28 | rng.Uint32()&hashMask
			}
			want, got := make([]float32, stride), make([]float32, stride)
			for i := range got {
				got[i] = 99 // must be overwritten
			}
			gatherGo(want, table, feats, &scale, mask, stride)
			if !gatherFast(got, table, feats, &scale, mask, stride) {
				t.Fatalf("stride %d: gatherFast declined", stride)
			}
			for j := range want {
				if d := math.Abs(float64(want[j] - got[j])); d > 1e-3*(1+math.Abs(float64(want[j]))) {
					t.Fatalf("stride %d, %d entries, column %d: asm %v, Go %v", stride, n, j, got[j], want[j])
				}
			}
		}
	}
	// A stride that is not a multiple of 8 is declined, not misread.
	if gatherFast(make([]float32, 12), make([]float32, (1<<bits)*12), nil, &scale, mask, 12) {
		t.Error("gatherFast accepted stride 12")
	}
}

// TestScoreSameWithoutAVX2 scores with the assembly kernel and with the Go
// loop: the probabilities agree.
func TestScoreSameWithoutAVX2(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2/FMA on this CPU (or not amd64)")
	}
	s := Default()
	p := Prompt{System: "You are a helpful assistant.", User: longPrompt(2000), Turns: 3}
	models := s.Models()
	fast, slow := make([]float64, len(models)), make([]float64, len(models))
	s.Score(p, models, fast)
	useAVX2 = false
	defer func() { useAVX2 = true }()
	s.Score(p, models, slow)
	for i := range models {
		if math.Abs(fast[i]-slow[i]) > 1e-5 {
			t.Errorf("%s: %v with AVX2, %v without", models[i], fast[i], slow[i])
		}
	}
}

// TestAxpyRowsFastMatchesGo checks the task-score kernel against the Go
// loop for one and two passes of 64 columns and for no entries.
func TestAxpyRowsFastMatchesGo(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2/FMA on this CPU (or not amd64): only the Go loop runs")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, stride := range []int{64, 128} {
		const rows = 512
		table := make([]float32, rows*stride)
		for i := range table {
			table[i] = rng.Float32()*2 - 1
		}
		for _, n := range []int{0, 1, 300} {
			idx, val := make([]uint32, n), make([]float32, n)
			for i := range idx {
				idx[i], val[i] = uint32(rng.IntN(rows)), rng.Float32()
			}
			want, got := make([]float32, stride), make([]float32, stride)
			for i := range got {
				got[i] = 99
			}
			axpyRowsGo(want, table, idx, val, stride)
			if !axpyRowsFast(got, table, idx, val, stride) {
				t.Fatalf("stride %d: axpyRowsFast declined", stride)
			}
			for j := range want {
				if d := math.Abs(float64(want[j] - got[j])); d > 1e-3*(1+math.Abs(float64(want[j]))) {
					t.Fatalf("stride %d, %d entries, column %d: asm %v, Go %v", stride, n, j, got[j], want[j])
				}
			}
		}
	}
	// An index past the table is declined, not read.
	if axpyRowsFast(make([]float32, 64), make([]float32, 64*4), []uint32{4}, []float32{1}, 64) {
		t.Error("axpyRowsFast accepted a row past the table")
	}
}
