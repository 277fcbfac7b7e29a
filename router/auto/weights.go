package auto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// ModelParams are one model's learned item-response parameters.
type ModelParams struct {
	Name string `json:"name"`
	// Theta is the ability per domain, on the difficulty's logit scale.
	Theta []float32 `json:"theta"`
	// Disc is the discrimination a per domain (> 0).
	Disc []float32 `json:"disc"`
	// U weighs the prompt's latent embedding z(x): the low-rank per-model
	// residual that lets two models rank the same prompts differently.
	U []float32 `json:"u"`
	// Source names the training source the model was measured on.
	Source string `json:"source,omitempty"`
}

// Weights are the scorer's learned parameters. Row r of the hashed table
// (and of Dense) holds R = 1+K+D floats: difficulty, the K-dimensional
// embedding, and the D domain logits.
type Weights struct {
	BucketBits int      `json:"bucket_bits"`
	K          int      `json:"k"`
	Domains    []string `json:"domains"`
	// DiffMedian is the median raw difficulty over the training prompts;
	// Score.Difficulty is σ(b − DiffMedian).
	DiffMedian float32       `json:"diff_median"`
	Models     []ModelParams `json:"models"`
	// Anchors name the learned models that public benchmark figures are
	// mapped between (weak, strong), with their public scores.
	Anchors []Anchor `json:"anchors"`
	// Info is free text: how and from what the weights were trained.
	Info string `json:"info"`
	// Tasks is the optional task-identity component (see TaskTable).
	Tasks *TaskTable `json:"tasks,omitempty"`

	Hashed []float32 `json:"-"` // (1<<BucketBits) × R
	Dense  []float32 `json:"-"` // NumDense × R
}

// Anchor ties a learned model to a public benchmark figure (accuracy 0..1)
// so that models without training data can be placed on the same scale.
type Anchor struct {
	Model string  `json:"model"`
	Score float64 `json:"score"`
}

// R is the width of one weight row.
func (w *Weights) R() int { return 1 + w.K + len(w.Domains) }

const magic = "LUMENAUTO1"

// MarshalBinary encodes w: magic, a length-prefixed JSON header, then the
// hashed and dense tables as little-endian float16. Hashed rows that are all
// zero (pruned or never seen) are skipped via a bitmap.
func (w *Weights) MarshalBinary() ([]byte, error) {
	r := w.R()
	if len(w.Hashed) != (1<<w.BucketBits)*r || len(w.Dense) != NumDense*r {
		return nil, errors.New("encoding weights: table sizes do not match the header")
	}
	if w.Tasks != nil {
		if err := w.Tasks.check(len(w.Models)); err != nil {
			return nil, fmt.Errorf("encoding weights: %w", err)
		}
		if len(w.Tasks.Mean) != w.Tasks.Dims || len(w.Tasks.InvStd) != w.Tasks.Dims || len(w.Tasks.Centroids) != len(w.Tasks.Names)*w.Tasks.Dims {
			return nil, errors.New("encoding weights: task table sizes do not match its header")
		}
	}
	hdr, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encoding weights header: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(magic)
	binary.Write(&b, binary.LittleEndian, uint32(len(hdr)))
	b.Write(hdr)
	n := 1 << w.BucketBits
	bitmap := make([]byte, (n+7)/8)
	for i := 0; i < n; i++ {
		for _, v := range w.Hashed[i*r : (i+1)*r] {
			if f16(v) != 0 && f16(v) != 0x8000 {
				bitmap[i/8] |= 1 << (i % 8)
				break
			}
		}
	}
	b.Write(bitmap)
	var h [2]byte
	for i := 0; i < n; i++ {
		if bitmap[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		for _, v := range w.Hashed[i*r : (i+1)*r] {
			binary.LittleEndian.PutUint16(h[:], f16(v))
			b.Write(h[:])
		}
	}
	for _, v := range w.Dense {
		binary.LittleEndian.PutUint16(h[:], f16(v))
		b.Write(h[:])
	}
	if t := w.Tasks; t != nil {
		for _, tab := range [][]float32{t.Mean, t.InvStd, t.Centroids} {
			for _, v := range tab {
				binary.LittleEndian.PutUint16(h[:], f16(v))
				b.Write(h[:])
			}
		}
	}
	return b.Bytes(), nil
}

// UnmarshalBinary decodes weights written by MarshalBinary.
func (w *Weights) UnmarshalBinary(data []byte) error {
	if !bytes.HasPrefix(data, []byte(magic)) {
		return errors.New("decoding weights: bad magic")
	}
	data = data[len(magic):]
	if len(data) < 4 {
		return errors.New("decoding weights: truncated header")
	}
	n := int(binary.LittleEndian.Uint32(data))
	data = data[4:]
	if len(data) < n {
		return errors.New("decoding weights: truncated header")
	}
	*w = Weights{}
	if err := json.Unmarshal(data[:n], w); err != nil {
		return fmt.Errorf("decoding weights header: %w", err)
	}
	data = data[n:]
	if w.BucketBits < 8 || w.BucketBits > 24 || w.K < 0 || w.K > 64 || len(w.Domains) == 0 {
		return errors.New("decoding weights: implausible header")
	}
	r := w.R()
	for _, m := range w.Models {
		if len(m.Theta) != len(w.Domains) || len(m.Disc) != len(w.Domains) || len(m.U) != w.K {
			return fmt.Errorf("decoding weights: model %q has the wrong shape", m.Name)
		}
	}
	rows := 1 << w.BucketBits
	bm := (rows + 7) / 8
	if len(data) < bm {
		return errors.New("decoding weights: truncated bitmap")
	}
	bitmap := data[:bm]
	data = data[bm:]
	w.Hashed = make([]float32, rows*r)
	for i := 0; i < rows; i++ {
		if bitmap[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		if len(data) < 2*r {
			return errors.New("decoding weights: truncated table")
		}
		for j := 0; j < r; j++ {
			w.Hashed[i*r+j] = f32(binary.LittleEndian.Uint16(data[2*j:]))
		}
		data = data[2*r:]
	}
	want := NumDense * r
	if t := w.Tasks; t != nil {
		if err := t.check(len(w.Models)); err != nil {
			return fmt.Errorf("decoding weights: %w", err)
		}
		want += t.Dims * (2 + len(t.Names))
	}
	if len(data) != 2*want {
		return fmt.Errorf("decoding weights: dense and task tables have %d bytes, want %d", len(data), 2*want)
	}
	read := func(n int) []float32 {
		out := make([]float32, n)
		for j := range out {
			out[j] = f32(binary.LittleEndian.Uint16(data[2*j:]))
		}
		data = data[2*n:]
		return out
	}
	w.Dense = read(NumDense * r)
	if t := w.Tasks; t != nil {
		t.Mean = read(t.Dims)
		t.InvStd = read(t.Dims)
		t.Centroids = read(t.Dims * len(t.Names))
	}
	return nil
}

// f16 converts to IEEE half precision, rounding to nearest even; values
// beyond the half range saturate to ±65504.
func f16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case exp >= 31:
		return sign | 0x7bff
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - exp)
		half := uint16(mant >> shift)
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || rem == mid && half&1 == 1 {
			half++
		}
		return sign | half
	}
	half := uint16(exp)<<10 | uint16(mant>>13)
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && half&1 == 1 {
		half++ // may carry into the exponent, which is correct rounding
	}
	if half >= 0x7c00 {
		half = 0x7bff
	}
	return sign | half
}

// f32 converts IEEE half precision to float32.
func f32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(mant) / 1024 / 16384
		if sign != 0 {
			return -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
