package auto

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFloat16(t *testing.T) {
	for _, tt := range []struct {
		in   float32
		want float32
	}{
		{0, 0}, {1, 1}, {-2.5, -2.5}, {0.1, 0.099975586}, {65504, 65504}, {1e6, 65504}, {-1e6, -65504},
		{6e-8, 5.9604645e-08}, {1e-9, 0}, {3.14159, 3.140625},
	} {
		if got := f32(f16(tt.in)); got != tt.want {
			t.Errorf("f32(f16(%v)) = %v, want %v", tt.in, got, tt.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		x := float32(r.NormFloat64() * 3)
		if got := f32(f16(x)); math.Abs(float64(got-x)) > math.Abs(float64(x))/1000+1e-7 {
			t.Fatalf("f16 round trip of %v = %v", x, got)
		}
	}
}

func TestWeightsRoundTrip(t *testing.T) {
	w := &Weights{BucketBits: 8, K: 2, Domains: []string{"a", "b"}, DiffMedian: 0.25,
		Models:  []ModelParams{{Name: "m", Theta: []float32{1, 2}, Disc: []float32{1, 1}, U: []float32{0.5, -0.5}}},
		Anchors: []Anchor{{"m", 0.7}, {"m", 0.8}}}
	r := w.R()
	w.Hashed = make([]float32, 256*r)
	w.Dense = make([]float32, NumDense*r)
	w.Hashed[3*r+1] = 0.5 // only row 3 is stored
	w.Dense[2] = -1.25
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Weights
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Hashed[3*r+1] != 0.5 || got.Dense[2] != -1.25 || got.DiffMedian != 0.25 || got.Models[0].U[1] != -0.5 {
		t.Errorf("round trip lost values: %+v", got.Models)
	}
	if want := len(magic) + 4; len(b) > want+400+32+r*2+NumDense*r*2 {
		t.Errorf("encoding is %d bytes; zero rows should be skipped", len(b))
	}
	for _, bad := range [][]byte{nil, []byte("nope"), b[:len(b)-1], append(append([]byte(nil), b...), 0)} {
		var x Weights
		if err := x.UnmarshalBinary(bad); err == nil {
			t.Errorf("decoding %d corrupt bytes succeeded", len(bad))
		}
	}
}

func TestExtractFeatures(t *testing.T) {
	var f Features
	Extract(Prompt{System: "Be terse.", User: "Which of the following is NOT a prime?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer:", Turns: 3}, &f)
	d := f.Dense
	if d[dOptions] != 1 || d[dEndsAnswer] != 1 || d[dNegation] == 0 || d[dWhichOfFollowing] == 0 || d[dHasSystem] != 1 || d[dTurns] == 0 {
		t.Errorf("multiple-choice cues not found: %v", d)
	}
	Extract(Prompt{User: "def add(a, b):\n    return a + b\n# write a unit test in python"}, &f)
	if f.Dense[dCode] == 0 || f.Dense[dOptions] != 0 {
		t.Errorf("code cues: %v", f.Dense)
	}
	Extract(Prompt{User: "Solve $\\frac{x}{2} = 3$. How many solutions?"}, &f)
	if f.Dense[dLatex] == 0 || f.Dense[dMath] == 0 {
		t.Errorf("math cues: %v", f.Dense)
	}
	Extract(Prompt{User: "Сколько будет два плюс два? 这是什么"}, &f)
	if f.Dense[dCyrillic] == 0 || f.Dense[dCJK] == 0 || f.Dense[dNonASCIIFrac] == 0 {
		t.Errorf("script features: %v", f.Dense)
	}
	// Same text, same features; numbers hash by shape.
	var a, b Features
	Extract(Prompt{User: "I have 12 apples"}, &a)
	Extract(Prompt{User: "I have 47 apples"}, &b)
	if len(a.Hashed) != len(b.Hashed) {
		t.Fatal("different feature counts")
	}
	for i := range a.Hashed {
		if a.Hashed[i] != b.Hashed[i] {
			t.Errorf("numbers of the same shape hash differently")
		}
	}
	// Long prompts are read at head and tail only.
	long := make([]byte, 100000)
	for i := range long {
		long[i] = "abcde "[i%6]
	}
	Extract(Prompt{User: string(long)}, &f)
	if len(f.Hashed) > 3*(headBytes+tailBytes) {
		t.Errorf("%d features for a long prompt; the read window is not bounded", len(f.Hashed))
	}
}
