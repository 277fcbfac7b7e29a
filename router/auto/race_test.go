//go:build race

package auto

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only asserted without it.
const raceEnabled = true
