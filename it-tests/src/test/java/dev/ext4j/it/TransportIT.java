package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * What the FUSE transport lets a process see, with the kernel as the oracle: transport_ops.py runs its
 * checks (hard links seen at once through every name, renameat2 flags, O_TMPFILE and linkat,
 * SEEK_DATA/SEEK_HOLE, copy_file_range, collapse and insert range, file handles after the caches are
 * dropped, fstat of an open directory a rename replaced) on a kernel loop mount and on an ext4j mount of
 * copies of one new image, and the outputs must be the same. Then many processes race on a few names
 * while one holds files open; nothing may go wrong, leak or be freed twice.
 */
class TransportIT extends FuseTestBase {
    private static final Duration SCRIPT_TIMEOUT = Duration.ofMinutes(2);
    private static final String SCRIPT = "transport_ops.py";

    /** Lines the kernel prints: they keep the script honest (a check that fails on both sides for another reason shows here). */
    private static final List<String> EXPECTED_ON_THE_KERNEL = List.of(
            "hl: ln a b, then nlink of a and b -> [2, 2]",
            "hl: setxattr user.x through b, getxattr through a -> \"via b\"",
            "hl: unlink c, nlinks -> {\"a\": 2, \"b\": 2}",
            "rn: NOREPLACE a onto existing b -> EEXIST",
            "rn: NOREPLACE a to missing c -> null",
            "rn: NOREPLACE|EXCHANGE -> EINVAL",
            "tmp: O_TMPFILE|O_EXCL cannot be linked -> ENOENT",
            "tmp: O_TMPFILE closed without a name leaves nothing -> [\"named\"]",
            "seek: SEEK_DATA from 4096 in sparse -> 65536",
            "seek: SEEK_HOLE from 0 in sparse -> 4096",
            "seek: SEEK_DATA from 131072 in sparse -> ENXIO",
            "cfr: 300000 bytes from 1000 to 5000 of another file -> 300000",
            "cfr: within a file, overlapping -> EINVAL",
            "ci: collapse misaligned offset 1000 -> EINVAL",
            "ci: insert at EOF -> EINVAL",
            "fh: open_by_handle_at a dir after drop_caches -> {\"content\": [\"file\"], \"same inode\": true}",
            "fh: open_by_handle_at an unlinked file after drop_caches -> ESTALE",
            "od: create through the fd of the removed dir -> ENOENT");

    /** Lines the script only records: compared where the kernel fails; where it succeeds ext4j must match it or fail cleanly. */
    private static final String RECORD = "record: ";
    /** Collapse and insert range: the kernel's FUSE module refuses them (EOPNOTSUPP) before asking the server. */
    private static final String COLLAPSE_INSERT = "ci: ";

    @Test
    void transportBehavesAsTheKernel() throws IOException {
        Path dir = newDir("checks");
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "64M", List.of("-b", "4096"));
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);
        Function<Path, String> checks = mnt -> Tools.python(SCRIPT_TIMEOUT, mnt, SCRIPT, "checks").requireOk().stdout();

        String kernel = ErrnoIT.onKernel(kernelImage, dir.resolve("kernel"), true, checks);
        List<String> missing = new ArrayList<>(EXPECTED_ON_THE_KERNEL);
        missing.removeAll(kernel.lines().toList());
        assertAll("the script does not test what it claims on the kernel:\n" + kernel,
                () -> assertEquals(List.of(), missing, "lines missing from the kernel's output"),
                () -> assertEquals(List.of(), kernel.lines().filter(l -> l.contains("WRONG RESULT")).toList()),
                () -> Tools.e2fsckClean(kernelImage));

        String out = ErrnoIT.onExt4j(image, dir, checks);
        List<String> differences = ErrnoIT.differences(kernel, out, (label, theirs, mine, all) ->
                label.startsWith(RECORD) && isSuccess(theirs) && isCleanErrno(mine)
                        || label.startsWith(COLLAPSE_INSERT) && fuseRefusedCollapseAndInsert(all));
        assertAll(() -> assertEquals("", String.join("\n", differences), "checks whose outcome differs from the kernel's"),
                () -> Tools.e2fsckClean(image));
    }

    /**
     * Several processes create, open, read, unlink, rename, link and stat the same four names for a
     * few seconds while one holds up to eight of the files open and checks that each still reads what
     * it read at first. Nothing unexpected may happen (any errno but ENOENT and EEXIST, a file with
     * another file's content, a held file that changes), no name may be left, every inode must come
     * back (statvfs while mounted, the superblock after) and the image must be e2fsck-clean. The same
     * run on the kernel proves the script's checks.
     */
    @Test
    void unlinkWhileOpenAndLookupsRace() throws IOException {
        Path dir = newDir("race");
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "32M", List.of("-b", "4096"));
        Path kernelImage = dir.resolve("kernel.img");
        Files.copy(image, kernelImage);
        String freeInodes = Tools.superblock(image).get("Free inodes");

        String clean = "{\"exit codes\": [0, 0, 0, 0, 0], \"left\": [], \"unexpected\": []}";
        String kernel = ErrnoIT.onKernel(kernelImage, dir.resolve("kernel"), true, mnt -> race(mnt, 3));
        assertEquals(clean, kernel, "the race on the kernel");

        Path mnt = Files.createDirectories(dir.resolve("ext4j"));
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            long before = freeInodes(mnt);
            String out = race(mnt, 5);
            assertEquals(clean, out, "the race on ext4j");
            // a file's inode is freed at its last release, which the kernel sends after close() returned
            await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(100))
                    .untilAsserted(() -> assertEquals(before, freeInodes(mnt), "free inodes (statvfs) after the race"));
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        assertAll(() -> Tools.e2fsckClean(image), () -> Tools.e2fsckClean(kernelImage),
                () -> assertEquals(freeInodes, Tools.superblock(image).get("Free inodes"), "free inodes in the superblock after the race"));
    }

    /**
     * FUSE_HANDLE_KILLPRIV_V2, which ext4j adds to libfuse 3.14's INIT reply: the kernel asks for
     * security.capability once per inode (SB_NOSEC), not before every WRITE as file_remove_privs()
     * does without it. libfuse's debug output lists the requests that two hundred writes cost;
     * ErrnoIT checks that setuid and setgid still go as on the kernel.
     */
    @Test
    void writesAreNotEachPrecededByACapabilityCheck() throws IOException {
        Path dir = newDir("killpriv");
        Path image = dir.resolve("ext4j.img");
        Tools.mkfs(null, image, "32M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Path log = dir.resolve("server.log");
        try (MountedImage m = MountedImage.mount(image, mnt, log, "debug")) {
            String f = "of=" + mnt.resolve("f");
            Tools.run(Tools.SHORT, "dd", "if=/dev/zero", f, "bs=4k", "count=100", "status=none").requireOk();
            Tools.run(Tools.SHORT, "dd", "if=/dev/zero", f, "bs=4k", "count=100", "conv=notrunc", "status=none").requireOk();
        }
        Map<String, Long> requests = Files.readAllLines(log).stream().map(OPCODE::matcher).filter(java.util.regex.Matcher::find)
                .collect(java.util.stream.Collectors.groupingBy(x -> x.group(1), java.util.stream.Collectors.counting()));
        assertAll(() -> assertEquals(200L, requests.get("WRITE"), "WRITE requests: " + requests),
                () -> assertTrue(requests.getOrDefault("GETXATTR", 0L) <= 2, "GETXATTR requests: " + requests),
                () -> Tools.e2fsckClean(image));
    }

    /** A request in libfuse's debug output: "unique: 5, opcode: WRITE (16), ...". */
    private static final java.util.regex.Pattern OPCODE = java.util.regex.Pattern.compile("^unique: \\d+, opcode: (\\w+) ");

    /** The race's JSON result (the operation counts go to stderr). */
    private static String race(Path mnt, int seconds) {
        Tools.Result r = Tools.python(SCRIPT_TIMEOUT, mnt, SCRIPT, "race", Integer.toString(seconds)).requireOk();
        System.out.println("race on " + mnt + ": " + r.stderr().strip());
        return r.stdout().strip();
    }

    private static long freeInodes(Path mnt) {
        String out = Tools.run(Tools.SHORT, "stat", "-f", "-c", "%d", mnt.toString()).requireOk().stdout().strip();
        return Long.parseLong(out);
    }

    /**
     * Whether ext4j's output shows that the kernel's FUSE module refused collapse and insert range, as
     * fuse_file_fallocate() does for every mode but KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE: each of them
     * failed with EOPNOTSUPP and left the file as it was. The kernel's own results cannot be reached
     * through FUSE then; a server that is asked must give them.
     */
    private static boolean fuseRefusedCollapseAndInsert(Map<String, String> ext4j) {
        List<String> calls = ext4j.keySet().stream()
                .filter(l -> l.startsWith(COLLAPSE_INSERT) && !l.equals("ci: before") && !l.equals("ci: after the refusals")).toList();
        return !calls.isEmpty() && calls.stream().allMatch(l -> ext4j.get(l).equals("ENOTSUP"))
                && ext4j.get("ci: before").equals(ext4j.get("ci: after the refusals"));
    }

    private static boolean isSuccess(String outcome) {
        return !outcome.matches("E[A-Z0-9]+") && !outcome.startsWith("WRONG RESULT");
    }

    /** An errno a caller can act on: not EIO (a server failure) and not a wrong result. */
    private static boolean isCleanErrno(String outcome) {
        return outcome.matches("E[A-Z0-9]+") && !outcome.equals("EIO");
    }
}
