#include "textflag.h"

// func gatherAVX2(h *float32, table *float32, feats []uint32, scale *[16]float32, mask uint32, stride int, blocks int)
//
// For every entry e of feats, adds scale[e>>28] times the first 8·blocks
// floats of table row e&mask (rows are stride floats apart) into h[0:8·blocks].
// blocks is 1..4; the sums stay in Y0..Y3 until the end.
TEXT ·gatherAVX2(SB), NOSPLIT, $0-72
	MOVQ h+0(FP), DI
	MOVQ table+8(FP), SI
	MOVQ feats_base+16(FP), BX
	MOVQ feats_len+24(FP), CX
	MOVQ scale+40(FP), R8
	MOVL mask+48(FP), R9
	MOVQ stride+56(FP), R10
	MOVQ blocks+64(FP), R11
	SHLQ $2, R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	TESTQ CX, CX
	JZ    store
	CMPQ  R11, $1
	JEQ   loop1
	CMPQ  R11, $2
	JEQ   loop2
	CMPQ  R11, $3
	JEQ   loop3

loop4:
	MOVL         (BX), AX
	MOVL         AX, DX
	SHRL         $28, DX
	VBROADCASTSS (R8)(DX*4), Y4
	ANDL         R9, AX
	IMULQ        R10, AX
	VFMADD231PS  (SI)(AX*1), Y4, Y0
	VFMADD231PS  32(SI)(AX*1), Y4, Y1
	VFMADD231PS  64(SI)(AX*1), Y4, Y2
	VFMADD231PS  96(SI)(AX*1), Y4, Y3
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop4
	JMP          store

loop3:
	MOVL         (BX), AX
	MOVL         AX, DX
	SHRL         $28, DX
	VBROADCASTSS (R8)(DX*4), Y4
	ANDL         R9, AX
	IMULQ        R10, AX
	VFMADD231PS  (SI)(AX*1), Y4, Y0
	VFMADD231PS  32(SI)(AX*1), Y4, Y1
	VFMADD231PS  64(SI)(AX*1), Y4, Y2
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop3
	JMP          store

loop2:
	MOVL         (BX), AX
	MOVL         AX, DX
	SHRL         $28, DX
	VBROADCASTSS (R8)(DX*4), Y4
	ANDL         R9, AX
	IMULQ        R10, AX
	VFMADD231PS  (SI)(AX*1), Y4, Y0
	VFMADD231PS  32(SI)(AX*1), Y4, Y1
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop2
	JMP          store

loop1:
	MOVL         (BX), AX
	MOVL         AX, DX
	SHRL         $28, DX
	VBROADCASTSS (R8)(DX*4), Y4
	ANDL         R9, AX
	IMULQ        R10, AX
	VFMADD231PS  (SI)(AX*1), Y4, Y0
	ADDQ         $4, BX
	DECQ         CX
	JNZ          loop1

store:
	VMOVUPS Y0, (DI)
	CMPQ    R11, $2
	JLT     done
	VMOVUPS Y1, 32(DI)
	CMPQ    R11, $3
	JLT     done
	VMOVUPS Y2, 64(DI)
	CMPQ    R11, $4
	JLT     done
	VMOVUPS Y3, 96(DI)

done:
	VZEROUPPER
	RET

// func axpyRowsAVX2(h *float32, table *float32, idx []uint32, val []float32, stride int)
//
// For every i, adds val[i] times the first 64 floats of table row idx[i]
// (rows are stride floats apart) into h[0:64]; len(val) ≥ len(idx).
TEXT ·axpyRowsAVX2(SB), NOSPLIT, $0-72
	MOVQ h+0(FP), DI
	MOVQ table+8(FP), SI
	MOVQ idx_base+16(FP), BX
	MOVQ idx_len+24(FP), CX
	MOVQ val_base+40(FP), R8
	MOVQ stride+64(FP), R10
	SHLQ $2, R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	TESTQ CX, CX
	JZ    astore

aloop:
	MOVL         (BX), AX
	VBROADCASTSS (R8), Y8
	IMULQ        R10, AX
	VFMADD231PS  (SI)(AX*1), Y8, Y0
	VFMADD231PS  32(SI)(AX*1), Y8, Y1
	VFMADD231PS  64(SI)(AX*1), Y8, Y2
	VFMADD231PS  96(SI)(AX*1), Y8, Y3
	VFMADD231PS  128(SI)(AX*1), Y8, Y4
	VFMADD231PS  160(SI)(AX*1), Y8, Y5
	VFMADD231PS  192(SI)(AX*1), Y8, Y6
	VFMADD231PS  224(SI)(AX*1), Y8, Y7
	ADDQ         $4, BX
	ADDQ         $4, R8
	DECQ         CX
	JNZ          aloop

astore:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	VZEROUPPER
	RET
