//go:build race

package limit

// floodKeys is smaller under the race detector, which makes each call
// about twenty times slower; the property checked is the same.
const floodKeys = 100_000
