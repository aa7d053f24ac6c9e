import Testing
@testable import ServalEngine

/// Every layout rule of docs/parallelism.md fails with its own one-line message.
@Suite struct ParallelLayoutTests {
    private func layout(_ edit: (inout ParallelLayout) -> Void) -> ParallelLayout {
        var l = ParallelLayout()
        edit(&l)
        return l
    }

    private func message(_ l: ParallelLayout, devices: Int = 8) -> String? {
        do {
            try l.validate(devices: devices, deviceName: "CPU cores")
            return nil
        } catch {
            #expect(!error.message.contains("\n"))
            return error.message
        }
    }

    @Test func validLayoutsPass() {
        #expect(message(ParallelLayout()) == nil)
        #expect(message(layout { $0.tpSize = 2 }) == nil)
        #expect(
            message(
                layout {
                    $0.tpSize = 4; $0.dpSize = 2; $0.enableDPAttention = true
                }) == nil)
        #expect(
            message(
                layout {
                    $0.tpSize = 4; $0.dpSize = 4; $0.enableDPAttention = true
                }) == nil)
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.nnodes = 2; $0.nodeRank = 1; $0.distInitAddr = "127.0.0.1:5000"
                }) == nil)
        #expect(
            message(
                layout {
                    $0.tpSize = 4; $0.epSize = 4
                }) == nil)
        #expect(
            layout {
                $0.tpSize = 4; $0.nnodes = 2; $0.nodeRank = 1; $0.distInitAddr = "h:1"
            }.firstRank == 2)
    }

    @Test func sizesMustBePositive() {
        #expect(message(layout { $0.tpSize = 0 }) == "--tp-size must be at least 1, got 0.")
        #expect(message(layout { $0.dpSize = 0 }) == "--dp-size must be at least 1, got 0.")
        #expect(message(layout { $0.epSize = -1 }) == "--ep-size must be at least 1, got -1.")
        #expect(message(layout { $0.nnodes = 0 }) == "--nnodes must be at least 1, got 0.")
    }

    @Test func pipelineParallelIsRefused() {
        #expect(message(layout { $0.ppSize = 2 })?.contains("pipeline parallelism is not supported") == true)
        #expect(message(layout { $0.ppSize = 2 })?.contains("use --tp-size 2 instead") == true)
    }

    @Test func dpAttentionRules() {
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.enableDPAttention = true
                })
                == "--enable-dp-attention needs --dp-size > 1 (the number of attention DP groups).")
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.dpSize = 4; $0.enableDPAttention = true
                })
                == "--dp-size 4 must be at most --tp-size 2 with --enable-dp-attention.")
        #expect(
            message(
                layout {
                    $0.tpSize = 6; $0.dpSize = 4; $0.enableDPAttention = true
                })?.hasPrefix(
                    "--tp-size 6 must be a multiple of --dp-size 4") == true)
    }

    @Test func multiNodeRules() {
        #expect(
            message(
                layout {
                    $0.tpSize = 3; $0.nnodes = 2; $0.distInitAddr = "h:1"
                })?.hasPrefix(
                    "--tp-size 3 must be a multiple of --nnodes 2") == true)
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.nnodes = 2
                })?.hasPrefix("--nnodes 2 needs --dist-init-addr") == true)
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.nnodes = 2; $0.distInitAddr = "localhost"
                })
                == "--dist-init-addr must be HOST:PORT with a port in 1...65535, got 'localhost'.")
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.nnodes = 2; $0.nodeRank = 2; $0.distInitAddr = "h:1"
                })
                == "--node-rank must be in 0..<2 (--nnodes 2), got 2.")
        #expect(message(layout { $0.nodeRank = 1 }) == "--node-rank must be in 0..<1 (--nnodes 1), got 1.")
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.dpSize = 2; $0.nnodes = 2; $0.distInitAddr = "h:1"
                })?.contains(
                    "runs on one node only") == true)
        #expect(ParallelLayout.parseAddress("10.0.0.1:29500")! == ("10.0.0.1", 29500))
        #expect(ParallelLayout.parseAddress("h:0") == nil)
    }

    @Test func expertParallelRules() {
        #expect(
            message(
                layout {
                    $0.tpSize = 4; $0.epSize = 3
                })
                == "--ep-size 3 must divide --tp-size 4 (experts are split over the TP ranks).")
        let ep2 = layout {
            $0.tpSize = 2; $0.epSize = 2
        }
        #expect(
            throws: ParallelLayoutError(
                "--ep-size 2 must divide the model's 5 routed experts; use an --ep-size that does.")
        ) {
            try ep2.validate(experts: 5)
        }
        #expect(throws: ParallelLayoutError.self) { try ep2.validate(experts: nil) }
        #expect(throws: Never.self) { try ep2.validate(experts: 64) }
    }

    @Test func moreRanksThanCoresIsRefused() {
        #expect(
            message(layout { $0.tpSize = 4 }, devices: 2)
                == "--tp-size 4 needs 4 ranks on this node but it has 2 CPU cores; use fewer ranks (or more --nnodes).")
        // Plain DP replicas are separate servers behind the router: not counted.
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.dpSize = 2
                }, devices: 2) == nil)
        let twoNodes = layout {
            $0.tpSize = 4; $0.nnodes = 2; $0.distInitAddr = "h:1"
        }
        #expect(message(twoNodes, devices: 1)?.hasPrefix("--tp-size 4 over 2 nodes needs 2 ranks on this node") == true)
        // Two nodes of one rank each fit on two single-core "nodes".
        #expect(
            message(
                layout {
                    $0.tpSize = 2; $0.nnodes = 2; $0.distInitAddr = "h:1"
                }, devices: 1) == nil)
    }
}
