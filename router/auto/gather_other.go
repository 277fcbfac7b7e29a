//go:build !amd64

package auto

// useAVX2 is false off amd64: gather and axpyRows run their Go loops.
var useAVX2 = false

func gatherFast(h, table []float32, feats []uint32, scale *[16]float32, mask uint32, stride int) bool {
	return false
}

func axpyRowsFast(h, table []float32, idx []uint32, val []float32, stride int) bool {
	return false
}
