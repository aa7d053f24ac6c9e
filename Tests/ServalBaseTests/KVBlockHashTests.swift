import Testing

@testable import ServalBase

@Suite struct KVBlockHashTests {
    @Test func chainCoversWholeBlocksAndAgreesWithNext() {
        let tokens: [Int32] = Array(1...10)
        let chain = KVBlockHash.chain(tokens, blockSize: 4)
        #expect(chain.count == 2)  // the last two tokens make no whole block
        let b0 = KVBlockHash.next(parent: KVBlockHash.root, tokens: tokens[0..<4])
        #expect(chain == [b0, KVBlockHash.next(parent: b0, tokens: tokens[4..<8])])
        #expect(chain.allSatisfy { $0 >= 0 })  // 63 bits: a JSON integer
    }

    @Test func aBlockHashNamesItsWholePrefix() {
        let a: [Int32] = [5, 6, 7, 8, 1, 2, 3, 4]
        let b: [Int32] = [5, 6, 7, 9, 1, 2, 3, 4]  // same second block, different first
        let ha = KVBlockHash.chain(a, blockSize: 4)
        let hb = KVBlockHash.chain(b, blockSize: 4)
        #expect(ha[0] != hb[0])
        #expect(ha[1] != hb[1])  // chained: the shared second block still differs
        let c: [Int32] = [5, 6, 7, 8, 1, 2, 3, 4, 42, 42, 42, 42]
        #expect(Array(KVBlockHash.chain(c, blockSize: 4).prefix(2)) == ha)
        // Slices hash like arrays (the engine passes slices of a request's tokens).
        #expect(KVBlockHash.chain(c[0..<8], blockSize: 4) == ha)
    }

    @Test func knownValuesMatchTheDocumentedFunction() {
        // Computed with the Python copy of docs/gateway.md's definition, so a change to the
        // function (which other publishers implement from the docs) cannot pass unnoticed.
        let h = KVBlockHash.next(parent: 0, tokens: [1, 2, 3, 4] as [Int32])
        #expect(h == 6_313_687_912_741_941_365)
        #expect(KVBlockHash.next(parent: h, tokens: [5, 6, 7, 8] as [Int32]) == 2_800_483_627_824_831_175)
        #expect(KVBlockHash.next(parent: 0, tokens: [-1, 2, 3, 4] as [Int32]) == 8_887_850_313_685_563_348)
    }
}
