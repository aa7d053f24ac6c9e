import XCTest

@testable import ServalBase

final class PhiloxTests: XCTestCase {
    /// Known-answer vectors of Random123's philox4x32-10 (kat_vectors).
    func testKnownAnswers() {
        func words(_ r: (UInt32, UInt32, UInt32, UInt32)) -> [UInt32] { [r.0, r.1, r.2, r.3] }
        XCTAssertEqual(
            words(Philox(seed: 0).block((0, 0, 0, 0))), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        XCTAssertEqual(
            words(Philox(seed: 0xFFFF_FFFF_FFFF_FFFF).block((0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF))),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = Philox(seed: 0x299f_31d0_a409_3822)
        XCTAssertEqual(
            words(pi.block((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344))),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    /// A draw depends only on (seed, index): drawing out of order gives the same numbers.
    func testDrawsAreIndependentOfOrder() {
        let g = Philox(seed: 42)
        let forward = (0..<64).map { g.unit(index: UInt64($0)) }
        let backward = (0..<64).reversed().map { g.unit(index: UInt64($0)) }
        XCTAssertEqual(forward, backward.reversed())
        XCTAssertTrue(forward.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertNotEqual(Philox(seed: 43).unit(index: 0), g.unit(index: 0))
    }

    /// Roughly uniform: the mean of many draws is near 1/2 and every decile is hit.
    func testUniformity() {
        let g = Philox(seed: 7)
        var deciles = [Int](repeating: 0, count: 10)
        var sum = 0.0
        for i in 0..<20_000 {
            let u = g.unit(index: UInt64(i))
            sum += u
            deciles[Int(u * 10)] += 1
        }
        XCTAssertEqual(sum / 20_000, 0.5, accuracy: 0.01)
        for d in deciles { XCTAssertEqual(Double(d), 2000, accuracy: 200) }
    }
}
