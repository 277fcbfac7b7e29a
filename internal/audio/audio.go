// Package audio reads how long a recording is from its container, without
// decoding it: WAV, FLAC, MP3 (a Xing/Info or VBRI frame count, else the
// first frame's bit rate), MP4/M4A (mvhd), Ogg (Opus and Vorbis: the last
// page's granule position) and WebM/Matroska (the segment's Duration).
// Budgets use it to hold a transcription's cost before the call.
package audio

import (
	"bytes"
	"encoding/binary"
	"math"
)

// Duration returns the length of the recording in data, in seconds, and
// whether its format was recognised and carried one.
func Duration(data []byte) (float64, bool) {
	var d float64
	var ok bool
	switch {
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WAVE":
		d, ok = wav(data)
	case len(data) >= 4 && string(data[:4]) == "fLaC":
		d, ok = flac(data)
	case len(data) >= 8 && string(data[4:8]) == "ftyp":
		d, ok = mp4(data)
	case len(data) >= 4 && string(data[:4]) == "OggS":
		d, ok = ogg(data)
	case len(data) >= 4 && bytes.Equal(data[:4], []byte{0x1a, 0x45, 0xdf, 0xa3}):
		d, ok = matroska(data)
	default:
		d, ok = mp3(data)
	}
	if !ok || math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
		return 0, false
	}
	return d, true
}

// wav reads the fmt chunk's byte rate and the data chunk's size.
func wav(data []byte) (float64, bool) {
	var byteRate uint32
	for i := 12; i+8 <= len(data); {
		id, size := string(data[i:i+4]), binary.LittleEndian.Uint32(data[i+4:i+8])
		body := i + 8
		switch id {
		case "fmt ":
			if body+12 > len(data) {
				return 0, false
			}
			byteRate = binary.LittleEndian.Uint32(data[body+8 : body+12])
		case "data":
			if byteRate == 0 {
				return 0, false
			}
			n := int64(size)
			if rest := int64(len(data) - body); size == 0 || size == 0xFFFFFFFF || n > rest {
				n = rest // streamed or cut short: what is there
			}
			return float64(n) / float64(byteRate), true
		}
		i = body + int(size) + int(size&1)
		if size == 0xFFFFFFFF || i < body {
			return 0, false
		}
	}
	return 0, false
}

// flac reads STREAMINFO's sample rate and total samples.
func flac(data []byte) (float64, bool) {
	// "fLaC", then a block header (type in the low 7 bits, 24-bit length);
	// STREAMINFO is first: sample rate in 20 bits and total samples in 36
	// bits from its 11th byte.
	if len(data) < 4+4+18 || data[4]&0x7f != 0 {
		return 0, false
	}
	s := data[8:]
	rate := uint32(s[10])<<12 | uint32(s[11])<<4 | uint32(s[12])>>4
	total := uint64(s[13]&0x0f)<<32 | uint64(binary.BigEndian.Uint32(s[14:18]))
	if rate == 0 || total == 0 {
		return 0, false
	}
	return float64(total) / float64(rate), true
}

// mp4 finds moov/mvhd: its time scale and duration.
func mp4(data []byte) (float64, bool) {
	moov, ok := box(data, "moov")
	if !ok {
		return 0, false
	}
	mvhd, ok := box(moov, "mvhd")
	if !ok || len(mvhd) < 20 {
		return 0, false
	}
	if mvhd[0] == 1 { // version 1: 64-bit times
		if len(mvhd) < 32 {
			return 0, false
		}
		scale, dur := binary.BigEndian.Uint32(mvhd[20:24]), binary.BigEndian.Uint64(mvhd[24:32])
		if scale == 0 {
			return 0, false
		}
		return float64(dur) / float64(scale), true
	}
	scale, dur := binary.BigEndian.Uint32(mvhd[12:16]), binary.BigEndian.Uint32(mvhd[16:20])
	if scale == 0 {
		return 0, false
	}
	return float64(dur) / float64(scale), true
}

// box returns the payload of the first box of type typ among data's
// boxes.
func box(data []byte, typ string) ([]byte, bool) {
	for i := 0; i+8 <= len(data); {
		size := uint64(binary.BigEndian.Uint32(data[i : i+4]))
		head := 8
		switch size {
		case 1:
			if i+16 > len(data) {
				return nil, false
			}
			size, head = binary.BigEndian.Uint64(data[i+8:i+16]), 16
		case 0:
			size = uint64(len(data) - i)
		}
		if size < uint64(head) || uint64(i)+size > uint64(len(data)) {
			return nil, false
		}
		if string(data[i+4:i+8]) == typ {
			return data[i+head : i+int(size)], true
		}
		i += int(size)
	}
	return nil, false
}

// ogg reads the last page's granule position: 48 kHz samples for Opus
// (less its pre-skip), the identification header's rate for Vorbis.
func ogg(data []byte) (float64, bool) {
	last := bytes.LastIndex(data, []byte("OggS"))
	if last < 0 || last+14 > len(data) {
		return 0, false
	}
	granule := binary.LittleEndian.Uint64(data[last+6 : last+14])
	if granule == math.MaxUint64 {
		return 0, false
	}
	if i := bytes.Index(data, []byte("OpusHead")); i >= 0 && i+12 <= len(data) {
		preSkip := uint64(binary.LittleEndian.Uint16(data[i+10 : i+12]))
		if granule < preSkip {
			return 0, false
		}
		return float64(granule-preSkip) / 48000, true
	}
	if i := bytes.Index(data, []byte("\x01vorbis")); i >= 0 && i+16 <= len(data) {
		rate := binary.LittleEndian.Uint32(data[i+12 : i+16])
		if rate == 0 {
			return 0, false
		}
		return float64(granule) / float64(rate), true
	}
	return 0, false
}

// matroska finds the segment Info's Duration (element 0x4489, a float in
// TimecodeScale units, 1 ms unless 0x2AD7B1 says otherwise). Recordings a
// browser makes as it goes often have none.
func matroska(data []byte) (float64, bool) {
	scale := 1e6 // ns per tick
	if i := bytes.Index(data, []byte{0x2a, 0xd7, 0xb1}); i >= 0 && i+4 <= len(data) {
		n := int(data[i+3] &^ 0x80)
		if data[i+3]&0x80 != 0 && n >= 1 && n <= 8 && i+4+n <= len(data) {
			var v uint64
			for _, b := range data[i+4 : i+4+n] {
				v = v<<8 | uint64(b)
			}
			if v > 0 {
				scale = float64(v)
			}
		}
	}
	for _, size := range []byte{0x88, 0x84} {
		i := bytes.Index(data, []byte{0x44, 0x89, size})
		if i < 0 {
			continue
		}
		b := data[i+3:]
		switch {
		case size == 0x88 && len(b) >= 8:
			return math.Float64frombits(binary.BigEndian.Uint64(b[:8])) * scale / 1e9, true
		case size == 0x84 && len(b) >= 4:
			return float64(math.Float32frombits(binary.BigEndian.Uint32(b[:4]))) * scale / 1e9, true
		}
	}
	return 0, false
}

// mp3 skips an ID3v2 tag and reads the first frame: a Xing/Info or VBRI
// frame count when there is one, else the length at the frame's bit rate.
func mp3(data []byte) (float64, bool) {
	start := 0
	if len(data) >= 10 && string(data[:3]) == "ID3" {
		size := int(data[6]&0x7f)<<21 | int(data[7]&0x7f)<<14 | int(data[8]&0x7f)<<7 | int(data[9]&0x7f)
		start = 10 + size
		if data[5]&0x10 != 0 {
			start += 10 // footer
		}
	}
	for i := start; i+4 <= len(data) && i < start+64<<10; i++ {
		if data[i] != 0xff || data[i+1]&0xe0 != 0xe0 {
			continue
		}
		h, ok := frameHeader(data[i : i+4])
		if !ok {
			continue
		}
		frame := data[i:]
		// Xing/Info after the side information.
		if off := 4 + h.sideInfo; off+12 <= len(frame) {
			if tag := string(frame[off : off+4]); tag == "Xing" || tag == "Info" {
				if flags := binary.BigEndian.Uint32(frame[off+4 : off+8]); flags&1 != 0 {
					frames := binary.BigEndian.Uint32(frame[off+8 : off+12])
					return float64(frames) * float64(h.samples) / float64(h.rate), true
				}
			}
		}
		if len(frame) >= 36+18 && string(frame[36:40]) == "VBRI" {
			frames := binary.BigEndian.Uint32(frame[36+14 : 36+18])
			return float64(frames) * float64(h.samples) / float64(h.rate), true
		}
		return float64(len(data)-i) * 8 / float64(h.bitrate), true
	}
	return 0, false
}

type mpegFrame struct {
	bitrate, rate, samples, sideInfo int
}

var (
	mpegRates = [3][3]int{{44100, 48000, 32000}, {22050, 24000, 16000}, {11025, 12000, 8000}}
	// kbit/s by index, for MPEG-1 layer III and MPEG-2/2.5 layer III.
	bitratesV1L3 = [16]int{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0}
	bitratesV2L3 = [16]int{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}
)

// frameHeader parses a layer III frame header.
func frameHeader(b []byte) (mpegFrame, bool) {
	version := (b[1] >> 3) & 3 // 0: 2.5, 2: 2, 3: 1
	layer := (b[1] >> 1) & 3   // 1: layer III
	bi, ri := b[2]>>4, (b[2]>>2)&3
	mono := b[3]>>6 == 3
	if version == 1 || layer != 1 || bi == 0 || bi == 15 || ri == 3 {
		return mpegFrame{}, false
	}
	var f mpegFrame
	switch version {
	case 3:
		f.bitrate, f.rate, f.samples = bitratesV1L3[bi]*1000, mpegRates[0][ri], 1152
		f.sideInfo = 32
		if mono {
			f.sideInfo = 17
		}
	default:
		f.bitrate, f.samples = bitratesV2L3[bi]*1000, 576
		f.rate = mpegRates[1][ri]
		if version == 0 {
			f.rate = mpegRates[2][ri]
		}
		f.sideInfo = 17
		if mono {
			f.sideInfo = 9
		}
	}
	return f, true
}
