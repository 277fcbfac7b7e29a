package audio

import (
	"math"
	"os"
	"testing"
)

// The files in testdata are 2.5 s of a 440 Hz tone, made by ffmpeg 5.1
// (see the commit): WAV, FLAC, MP3 at a constant bit rate without a Xing
// frame and at a variable one with it (both behind an ID3v2 tag), AAC in
// MP4 with the moov box first and last, Opus and Vorbis in Ogg, Opus in
// WebM.
func TestDuration(t *testing.T) {
	for _, name := range []string{"tone.wav", "tone.flac", "tone-cbr.mp3", "tone-vbr.mp3", "tone.m4a", "tone-moov-last.m4a",
		"tone.opus", "tone.ogg", "tone.webm"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := Duration(data)
		if !ok || math.Abs(d-2.5) > 0.12 {
			t.Errorf("%s: %.3f s, %v; want 2.5", name, d, ok)
		}
	}
}

func TestDurationUnknown(t *testing.T) {
	wav, _ := os.ReadFile("testdata/tone.wav")
	for name, data := range map[string][]byte{
		"empty":        nil,
		"text":         []byte("this is not audio at all, but it is long enough to be looked at"),
		"wav header":   wav[:20],
		"flac header":  []byte("fLaC\x00\x00\x00\x22"),
		"ogg no codec": []byte("OggS\x00\x04\x10\x00\x00\x00\x00\x00\x00\x00"),
	} {
		if d, ok := Duration(data); ok {
			t.Errorf("%s: %.3f s", name, d)
		}
	}
}
