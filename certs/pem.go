package certs

import "encoding/pem"

// pemBlocks decodes the PEM blocks of data in order, stopping at the
// first text that is not a PEM block. None means data is not PEM.
func pemBlocks(data []byte) []*pem.Block {
	var blocks []*pem.Block
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return blocks
		}
		blocks = append(blocks, block)
	}
}
