//go:build !race

package limit

// floodKeys is how many distinct keys the memory tests send.
const floodKeys = 1_000_000
