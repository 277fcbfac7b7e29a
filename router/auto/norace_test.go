//go:build !race

package auto

const raceEnabled = false
