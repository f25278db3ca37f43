//go:build race

package e2e

// raceEnabled: the manager binary is built with -race too, reusing the test build's packages.
const raceEnabled = true
