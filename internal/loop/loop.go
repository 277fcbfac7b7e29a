// Package loop runs the steps of Lumen's background loops (saving budget
// spend, reloading keys, purging audit bodies, a SIGHUP reload …) so that
// a panic in one step is logged and the loop goes on: a goroutine that
// panics ends the whole process, and with it `lumen serve` and every
// request in flight, for a fault in work no request waits on.
package loop

import (
	"runtime/debug"

	"github.com/rs/zerolog"
)

// Step runs f, one step of the background loop name. A panic in f is
// recovered and logged at error level with its value and stack, and Step
// reports it (true); the loop calls Step again at its next turn. What f
// left half done stays so: a step must leave its loop's state usable when
// cut short, as it must when it fails.
func Step(log zerolog.Logger, name string, f func()) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			log.Error().Str("loop", name).Interface("panic", v).Bytes("stack", debug.Stack()).
				Msg("background loop recovered from a panic; it goes on")
		}
	}()
	f()
	return false
}
