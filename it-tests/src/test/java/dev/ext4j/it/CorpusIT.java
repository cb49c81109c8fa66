package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.Timeout;

/**
 * Every image of the e2fsprogs test corpus (mostly deliberately broken filesystems): ext4j must
 * either refuse it quickly with a one-line reason, or mount it and survive a full walk (readdir and
 * lstat of every entry, reading every regular file, symlink targets, xattrs, statfs) within a time
 * limit. Errors on individual files
 * (EUCLEAN, EBADMSG, EIO, ENOENT, ENOKEY...) are fine; an "unexpected failure" in the server log, a
 * hang, a dead mount, a changed image or an unmount that needs force are not.
 *
 * <p>Images are processed {@value #PARALLEL} at a time; there is one dynamic test per image, and a
 * summary is printed at the end.
 */
class CorpusIT extends FuseTestBase {
    static final int PARALLEL = 4;
    /**
     * Per-image limit for the walk. The largest image (f_many_subdirs, 130,000 entries) needs about
     * 45 s on its own on a 2-CPU machine and up to 100 s while other images are processed next to it.
     */
    static final Duration WALK_TIMEOUT = Duration.ofSeconds(180);
    /** A refusal must come within this time. */
    static final Duration REFUSAL_TIMEOUT = Duration.ofSeconds(30);
    /** How much of each regular file is read. */
    static final String READ_LIMIT = "16M";

    /** Error messages a walk over a damaged filesystem may legitimately produce on single entries. */
    static final List<String> TOLERATED = List.of(
            "Structure needs cleaning",      // EUCLEAN
            "Bad message",                   // EBADMSG
            "Input/output error",            // EIO (unexpected ones are caught through the server log)
            "No such file or directory",     // ENOENT: a listed name that does not resolve
            "Required key not available",    // ENOKEY: encrypted without the key
            "No data available",             // ENODATA
            "No such attribute");            // ENODATA as getfattr says it (user.* on a symlink: the VFS refuses)

    enum Outcome { MOUNTED, REFUSED, FAILED }

    record Result(String name, String description, Outcome outcome, List<String> problems, String reason,
                  Map<String, Integer> errorCounts, long millis) {
    }

    private static final Map<String, Result> results = new ConcurrentHashMap<>();
    private static ExecutorService pool;

    /**
     * The walk: runs in a child process with cwd = mount point. One listing pass (readdir, lstat and
     * readlink of every entry), then reading the first {@code $1} of every regular file (checked
     * with stat too: find's %y may come from the directory entry's type, and a damaged entry may
     * call a fifo a regular file; opening that fifo would block), then every xattr, then statfs.
     * Error messages are classified by awk: tolerated ones are only counted ("count KIND=N"), all
     * others are printed in full.
     */
    private static final String WALK = """
            tolerated='%s'
            {
                find . -xdev -printf '%%y/%%p\\0' > "$2"
                tr '\\0' '\\n' < "$2" | cut -c1 | sort | uniq -c | awk '{ printf "types %%s=%%s\\n", $2, $1 }' >&3
                while IFS= read -r -d '' rec; do
                    f="${rec#*/}"
                    [ "${rec%%%%/*}" = f ] && [ -f "$f" ] && [ ! -L "$f" ] && printf '%%s\\0' "$f"
                done < "$2" | xargs -0 -r -n 20 head -q -c "$1"
                find . -xdev -type l -printf '%%l'
                getfattr -R -P -h -d -m - -e hex .
                stat -f .
            } 3>&1 2>&1 >/dev/null | awk -v tol="$tolerated" '
                /^types / { print; next }
                { if (match($0, tol)) { c[substr($0, RSTART, RLENGTH)]++ } else { print } }
                END { for (k in c) print "count " k "=" c[k] }'
            echo "walk-done"
            """.formatted(String.join("|", TOLERATED));

    @TestFactory
    @Timeout(value = 30, unit = TimeUnit.MINUTES)
    Stream<DynamicTest> everyCorpusImage() throws IOException {
        Path corpus = Tools.corpus();
        assumeTrue(Files.isDirectory(corpus), "corpus not found at " + corpus + " (-Dext4j.corpus)");
        List<CorpusImage> images = CorpusImage.list(corpus);
        assumeTrue(!images.isEmpty(), "no images under " + corpus);
        String only = System.getProperty("ext4j.corpus.only");
        if (only != null && !only.isBlank()) {
            List<String> names = List.of(only.split(","));
            images = images.stream().filter(c -> names.contains(c.id()) || names.contains(c.dir().getFileName().toString())).toList();
        }
        pool = Executors.newFixedThreadPool(PARALLEL);
        List<Future<Result>> futures = new ArrayList<>();
        for (CorpusImage c : images) {
            futures.add(pool.submit(() -> {
                Result r = check(c);
                results.put(r.name(), r);
                return r;
            }));
        }
        pool.shutdown();
        List<DynamicTest> tests = new ArrayList<>();
        for (int i = 0; i < images.size(); i++) {
            CorpusImage c = images.get(i);
            Future<Result> f = futures.get(i);
            tests.add(DynamicTest.dynamicTest(c.id(), () -> {
                Result r;
                try {
                    r = f.get(10, TimeUnit.MINUTES);
                } catch (TimeoutException e) {
                    throw new AssertionError(c.id() + ": no result after 10 minutes (harness hang?)");
                }
                assertTrue(r.problems().isEmpty(), r.name() + " (" + r.description() + "), " + r.outcome() + ":\n  "
                        + String.join("\n  ", r.problems()));
            }));
        }
        return tests.stream();
    }

    @AfterAll
    static void summary() throws InterruptedException {
        if (pool != null) {
            pool.shutdownNow();
            pool.awaitTermination(2, TimeUnit.MINUTES);
        }
        if (results.isEmpty()) {
            return;
        }
        Map<String, Result> sorted = new TreeMap<>(results);
        long mounted = sorted.values().stream().filter(r -> r.outcome() == Outcome.MOUNTED).count();
        long refused = sorted.values().stream().filter(r -> r.outcome() == Outcome.REFUSED).count();
        long failed = sorted.values().stream().filter(r -> !r.problems().isEmpty()).count();
        Map<String, Integer> errors = new TreeMap<>();
        sorted.values().forEach(r -> r.errorCounts().forEach((k, v) -> errors.merge(k, v, Integer::sum)));
        StringBuilder b = new StringBuilder();
        b.append("\n===== ext4j corpus summary: ").append(sorted.size()).append(" images, ").append(mounted).append(" mounted, ")
                .append(refused).append(" refused, ").append(failed).append(" with problems =====\n");
        b.append("entry types walked and tolerated errors (summed over all images): ").append(errors).append('\n');
        b.append("refused:\n");
        sorted.values().stream().filter(r -> r.outcome() == Outcome.REFUSED)
                .forEach(r -> b.append("  ").append(r.name()).append(": ").append(r.reason()).append('\n'));
        b.append("tolerated errors per image:\n");
        sorted.values().forEach(r -> {
            Map<String, Integer> errs = new TreeMap<>(r.errorCounts());
            errs.keySet().removeIf(k -> k.startsWith("entries of type"));
            if (!errs.isEmpty()) {
                b.append("  ").append(r.name()).append(": ").append(errs).append('\n');
            }
        });
        b.append("with problems:\n");
        sorted.values().stream().filter(r -> !r.problems().isEmpty())
                .forEach(r -> b.append("  ").append(r.name()).append(" [").append(r.outcome()).append("]: ")
                        .append(r.problems().get(0).lines().findFirst().orElse("")).append('\n'));
        b.append("slowest: ");
        sorted.values().stream().sorted((x, y) -> Long.compare(y.millis(), x.millis())).limit(5)
                .forEach(r -> b.append(r.name()).append(' ').append(r.millis()).append(" ms; "));
        System.out.println(b);
        try {
            Files.writeString(Path.of(System.getProperty("ext4j.corpus.summary", "target/corpus-summary.txt")), b.toString());
        } catch (IOException e) {
            // the console has it
        }
    }

    /** One image of the corpus: a directory with image.gz, image.bz2, image.tar.bz2 or several *.bz2 images. */
    record CorpusImage(String id, Path dir, Path archive) {
        static List<CorpusImage> list(Path corpus) throws IOException {
            List<CorpusImage> out = new ArrayList<>();
            List<Path> dirs;
            try (Stream<Path> s = Files.list(corpus)) {
                dirs = s.filter(Files::isDirectory).sorted().toList();
            }
            for (Path d : dirs) {
                String n = d.getFileName().toString();
                if (Files.isRegularFile(d.resolve("image.gz"))) {
                    out.add(new CorpusImage(n, d, d.resolve("image.gz")));
                } else if (Files.isRegularFile(d.resolve("image.bz2"))) {
                    out.add(new CorpusImage(n, d, d.resolve("image.bz2")));
                } else if (Files.isRegularFile(d.resolve("image.tar.bz2"))) {
                    out.add(new CorpusImage(n, d, d.resolve("image.tar.bz2")));
                } else {
                    try (Stream<Path> s = Files.list(d)) {
                        for (Path a : s.filter(p -> p.toString().endsWith(".bz2") || p.toString().endsWith(".gz")).sorted().toList()) {
                            out.add(new CorpusImage(n + "/" + a.getFileName().toString().replaceAll("\\.(bz2|gz)$", ""), d, a));
                        }
                    }
                }
            }
            return out;
        }

        /** Unpacks the image into {@code work} and returns its path. */
        Path unpack(Path work) throws IOException {
            Path img = work.resolve("image");
            String a = archive.getFileName().toString();
            if (a.endsWith(".tar.bz2")) {
                Path x = Files.createDirectory(work.resolve("tar"));
                Tools.run(Tools.LONG, "tar", "-xjf", archive.toString(), "-C", x.toString()).requireOk();
                try (Stream<Path> s = Files.walk(x)) {
                    // the filesystem image, not an external journal (*.jnl) next to it
                    Path found = s.filter(Files::isRegularFile).filter(p -> !p.toString().endsWith(".jnl")).sorted().findFirst()
                            .orElseThrow(() -> new IOException("no image in " + archive));
                    Files.move(found, img);
                }
            } else if (a.endsWith(".bz2")) {
                Tools.bash(Tools.LONG, "bzip2 -dc \"$1\" > \"$2\"", archive.toString(), img.toString()).requireOk();
            } else {
                Tools.gunzip(archive, img);
            }
            return img;
        }
    }

    /** Mounts one corpus image and checks everything; returns what went wrong (never throws). */
    static Result check(CorpusImage c) {
        long start = System.nanoTime();
        String name = c.id();
        String description = "";
        List<String> problems = new ArrayList<>();
        Map<String, Integer> errorCounts = new TreeMap<>();
        Outcome outcome = Outcome.FAILED;
        String reason = "";
        Path work = null;
        try {
            if (Files.exists(c.dir().resolve("name"))) {
                description = Files.readString(c.dir().resolve("name"), StandardCharsets.UTF_8).strip();
            }
            work = Files.createTempDirectory(scratch, name.replace('/', '_') + "-");
            Path img = c.unpack(work);
            String sha = Tools.sha256(img);
            Path mnt = Files.createDirectory(work.resolve("mnt"));
            Path log = work.resolve("server.log");
            try (MountedImage m = MountedImage.attempt(img, mnt, log, null, "ro")) {
                Tools.Result mr = m.mountResult();
                if (mr.timedOut()) {
                    problems.add("mount hung: no answer after " + MountedImage.MOUNT_TIMEOUT.toSeconds() + " s\n" + mr.describe());
                } else if (!mr.ok()) {
                    outcome = Outcome.REFUSED;
                    reason = checkRefusal(mr, problems);
                    if (mr.elapsed().compareTo(REFUSAL_TIMEOUT) > 0) {
                        problems.add("refusal took " + mr.elapsed().toMillis() + " ms");
                    }
                } else {
                    outcome = Outcome.MOUNTED;
                    if (!m.liveOnReturn()) {
                        problems.add("mount returned before the mount point was live");
                    }
                    walk(m, problems, errorCounts);
                }
                m.unmount();
                if (outcome == Outcome.MOUNTED && !m.cleanlyUnmounted()) {
                    problems.add("unmount needed force: " + String.join("; ", m.cleanupNotes()));
                } else if (outcome != Outcome.MOUNTED && !m.cleanupNotes().isEmpty()) {
                    problems.add("a failed mount left something behind: " + String.join("; ", m.cleanupNotes()));
                }
                List<String> unexpected = m.unexpectedFailures();
                if (!unexpected.isEmpty()) {
                    problems.add(unexpected.size() + " unexpected failure(s) in the server log; first:\n" + Tools.abbreviate(unexpected.get(0), 3000));
                }
            }
            if (!sha.equals(Tools.sha256(img))) {
                problems.add("the image was modified by a read-only mount");
            }
        } catch (Throwable t) {
            problems.add("harness error: " + t);
        } finally {
            if (work != null && MountTable.under(work).isEmpty()) {
                Tools.deleteTree(work);
            }
        }
        return new Result(name, description, outcome, problems, reason, errorCounts, (System.nanoTime() - start) / 1_000_000);
    }

    /** A refusal needs a non-zero exit and a reason: an "ext4j: ..." line, no stack trace. Returns the reason. */
    private static String checkRefusal(Tools.Result mr, List<String> problems) {
        List<String> lines = mr.stderr().lines().filter(l -> !l.isBlank()).toList();
        String reason = lines.stream().filter(l -> l.startsWith("ext4j: cannot mount")).findFirst()
                .orElse(lines.stream().filter(l -> l.startsWith("ext4j:") && !l.contains("mounted read-only")).findFirst().orElse(""));
        if (reason.isEmpty()) {
            problems.add("refused without an 'ext4j: ...' reason on stderr:\n" + mr.describe());
        }
        if (lines.stream().anyMatch(l -> l.matches("^\\s+at [\\w.$]+\\(.*") || l.startsWith("Exception in thread"))) {
            problems.add("refusal printed a stack trace:\n" + mr.describe());
        }
        return reason;
    }

    private static void walk(MountedImage m, List<String> problems, Map<String, Integer> errorCounts) {
        Path listing = m.mountPoint().resolveSibling("walk-listing");
        Tools.Result w = Tools.run(WALK_TIMEOUT, null, m.mountPoint(), List.of("bash", "-c", WALK, "walk", READ_LIMIT, listing.toString()));
        if (w.timedOut()) {
            problems.add("walk did not finish within " + WALK_TIMEOUT.toSeconds() + " s (hang or very slow); output so far:\n"
                    + Tools.abbreviate(w.output(), 2000));
        } else if (!w.stdout().contains("walk-done")) {
            problems.add("walk aborted: " + Tools.abbreviate(w.output(), 2000));
        }
        List<String> odd = new ArrayList<>();
        for (String line : w.stdout().lines().toList()) {
            if (line.isBlank() || line.equals("walk-done")) {
                continue;
            }
            if (line.startsWith("types ")) {
                String[] kv = line.substring(6).split("=");
                errorCounts.merge("entries of type " + kv[0], Integer.parseInt(kv[1].trim()), Integer::sum);
            } else if (line.startsWith("count ")) {
                String[] kv = line.substring(6).split("=");
                errorCounts.merge(kv[0], Integer.parseInt(kv[1].trim()), Integer::sum);
            } else {
                odd.add(line);
            }
        }
        if (!odd.isEmpty()) {
            problems.add(odd.size() + " unexpected error(s) during the walk, e.g.:\n    " + String.join("\n    ", odd.subList(0, Math.min(10, odd.size()))));
        }
        m.responds(TOLERATED).ifPresent(p -> problems.add("after the walk the mount does not respond: " + p));
    }
}
