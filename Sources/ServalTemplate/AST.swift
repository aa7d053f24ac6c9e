/// The parsed form of a template. Pure data (constants only), so a parsed template is Sendable
/// and can be rendered concurrently.
enum Literal: Sendable {
    case none, bool(Bool), int(Int), double(Double), string(String)
}

indirect enum Expr: Sendable {
    case literal(Literal)
    case name(String, line: Int)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)], line: Int)
    case attr(Expr, String, line: Int)
    case item(Expr, Expr, line: Int)
    case slice(Expr, Expr?, Expr?, Expr?, line: Int)
    case call(Expr, Arguments, line: Int)
    case filter(Expr, String, Arguments, line: Int)
    case test(Expr, String, Arguments, negated: Bool, line: Int)
    case negate(Expr, line: Int)
    case plus(Expr, line: Int)
    case binary(String, Expr, Expr, line: Int)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case not(Expr)
    case compare(Expr, [(String, Expr)], line: Int)
    case conditional(test: Expr, then: Expr, otherwise: Expr?)
}

struct Arguments: Sendable {
    var positional: [Expr] = []
    var keyword: [(String, Expr)] = []
}

enum AssignTarget: Sendable {
    case name(String)
    case attribute(String, String)
    case tuple([String])
}

indirect enum Node: Sendable {
    case text(String)
    case output(Expr)
    case ifChain([(Expr, [Node])], otherwise: [Node])
    case forLoop(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], line: Int)
    case set(AssignTarget, Expr, line: Int)
    case setBlock(String, [Node])
    case macro(name: String, params: [(String, Expr?)], body: [Node])
    case breakLoop
    case continueLoop
}
