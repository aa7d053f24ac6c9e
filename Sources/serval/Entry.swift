import Foundation

/// The process entry: stderr line-buffered, then the command line. Rank processes share
/// their parent's stderr, and unbuffered stderr wrote ArgumentParser's error messages a
/// character at a time, so two ranks failing at once interleaved their letters; a line is
/// now one write, and lines of several processes never mix.
@main
enum Entry {
    static func main() async {
        setvbuf(stderr, nil, _IOLBF, 0)
        await Serval.main()
    }
}
