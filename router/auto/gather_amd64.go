package auto

import "golang.org/x/sys/cpu"

// useAVX2 selects the assembly kernel of gather (gather_amd64.s).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func gatherAVX2(h *float32, table *float32, feats []uint32, scale *[16]float32, mask uint32, stride int, blocks int)

// gatherFast is gather with AVX2 and FMA, 32 columns per pass over feats;
// it reports false (and does nothing) where they are missing.
func gatherFast(h, table []float32, feats []uint32, scale *[16]float32, mask uint32, stride int) bool {
	if !useAVX2 || stride%8 != 0 || len(table) < int(mask+1)*stride || len(h) < stride {
		return false
	}
	for c := 0; c < stride; c += 32 {
		blocks := min(4, (stride-c)/8)
		gatherAVX2(&h[c], &table[c], feats, scale, mask, stride, blocks)
	}
	return true
}

//go:noescape
func axpyRowsAVX2(h *float32, table *float32, idx []uint32, val []float32, stride int)

// axpyRowsFast is axpyRows with AVX2 and FMA, 64 columns per pass; it
// reports false (and does nothing) where they are missing.
func axpyRowsFast(h, table []float32, idx []uint32, val []float32, stride int) bool {
	if !useAVX2 || stride%64 != 0 || len(h) < stride || len(val) < len(idx) {
		return false
	}
	rows := len(table) / stride
	for _, i := range idx {
		if int(i) >= rows {
			return false
		}
	}
	for c := 0; c < stride; c += 64 {
		axpyRowsAVX2(&h[c], &table[c], idx, val, stride)
	}
	return true
}
