// Package bytescan finds the end of a run of bytes that a table marks,
// eight bytes a step: the scanners on the stanza path (the XML reader's
// character data, the keyword automaton's start state) spend most of a
// message's bytes in such runs, and a loop that tests one byte at a time
// waits for each compare before the next load.
package bytescan

// Run returns the index of the first byte of s[i:end] that marked does not
// mark (marked[b] == 0), or end. marked holds 1 or 0 per byte value.
func Run[T ~string | ~[]byte](s T, i, end int, marked *[256]uint8) int {
	for ; i+8 <= end; i += 8 {
		b := s[i : i+8]
		if marked[b[0]]&marked[b[1]]&marked[b[2]]&marked[b[3]]&marked[b[4]]&marked[b[5]]&marked[b[6]]&marked[b[7]] == 0 {
			break
		}
	}
	for i < end && marked[s[i]] != 0 {
		i++
	}
	return i
}
