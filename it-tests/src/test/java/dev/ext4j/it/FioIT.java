package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * fio writes a 64 MiB file through the mount with crc32c verification headers in every block and
 * verifies it: in the same run (which may read the kernel's page cache), again with
 * {@code --verify_only} in the same mount from a new open (FUSE drops the file's cached pages on
 * open without {@code kernel_cache}, so the driver is read), and once more with
 * {@code --verify_only} after unmount and remount. {@code --verify_only} replays the job's offsets
 * and block sizes from the same random seed (fio's default {@code randrepeat=1}) without writing and
 * checks the headers. Buffered I/O with psync, as applications use a FUSE mount without direct_io.
 */
class FioIT extends FuseTestBase {
    private static final Duration FIO_TIMEOUT = Duration.ofMinutes(5);

    static Stream<Arguments> jobs() {
        return Stream.of(
                Arguments.of("randwrite-4k", List.of("--rw=randwrite", "--bs=4k")),
                Arguments.of("randrw-1k-64k", List.of("--rw=randrw", "--bsrange=1k-64k", "--rwmixwrite=60")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("jobs")
    void fioVerifiesWhatItWroteBeforeAndAfterRemount(String name, List<String> workload) throws IOException {
        assumeTrue(Tools.run(Tools.SHORT, "sh", "-c", "command -v fio").ok(), "fio is not installed (apt-get install fio)");
        Path dir = newDir("fio-" + name);
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "128M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        Path fioDir = Files.createDirectories(dir.resolve("fio-cwd"));

        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Tools.Result write = fio(fioDir, mnt, name, workload, false);
            requireVerified(write, "write and verify in one run", false);
            assertEquals(64L << 20, Files.size(mnt.resolve("data")), "size of the file fio wrote");
            Tools.Result again = fio(fioDir, mnt, name, workload, true);
            requireVerified(again, "--verify_only in the same mount", true);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);

        Path mnt2 = Files.createDirectories(dir.resolve("mnt2"));
        try (MountedImage m = MountedImage.mount(image, mnt2, dir.resolve("server2.log"))) {
            Tools.Result after = fio(fioDir, mnt2, name, workload, true);
            requireVerified(after, "--verify_only after unmount and remount", true);
            assertEquals(List.of(), m.unexpectedFailures(), "server log after remount");
        }
        Tools.e2fsckClean(image);
    }

    /** One fio run of the job (same name, file, size, seed and workload every time). */
    private static Tools.Result fio(Path cwd, Path mnt, String name, List<String> workload, boolean verifyOnly) {
        List<String> cmd = new ArrayList<>(List.of("fio",
                "--name=" + name,
                "--filename=" + mnt.resolve("data"),
                "--size=64m",
                "--ioengine=psync",
                "--direct=0",
                "--verify=crc32c",
                "--do_verify=1",
                "--verify_fatal=1",
                "--verify_dump=0",
                "--verify_state_save=0",
                "--randrepeat=1",
                "--randseed=4242"));
        cmd.addAll(workload);
        if (verifyOnly) {
            cmd.add("--verify_only");
        }
        return Tools.run(FIO_TIMEOUT, null, cwd, cmd);
    }

    private static final Pattern ERR = Pattern.compile("err=\\s*(\\d+)");
    private static final Pattern READ_IO = Pattern.compile("READ: bw=[^,]*, [^,]*, io=([0-9.]+)([KMG]i?B)");

    /** fio exited 0, reports err=0, printed no verification complaint, and read back the file. */
    private static void requireVerified(Tools.Result r, String what, boolean verifyOnly) {
        String out = r.output();
        assertTrue(r.ok(), what + ": " + r.describe());
        for (String bad : List.of("verify failed", "bad magic", "bad header", "verify: ", "fio: pid=", "io_u error")) {
            assertTrue(!out.contains(bad), what + ": fio reported \"" + bad + "\":\n" + out);
        }
        Matcher e = ERR.matcher(out);
        assertTrue(e.find(), what + ": no err= in the fio output:\n" + out);
        assertEquals("0", e.group(1), what + ": fio's job status:\n" + out);
        Matcher rd = READ_IO.matcher(out);
        assertTrue(rd.find(), what + ": no READ summary (fio verified nothing?):\n" + out);
        double amount = Double.parseDouble(rd.group(1));
        double mib = switch (rd.group(2).charAt(0)) {
            case 'K' -> amount / 1024;
            case 'M' -> amount;
            default -> amount * 1024;
        };
        // randwrite writes all 64 MiB; randrw writes ~60% of it; the verify reads what was written
        assertTrue(mib >= (verifyOnly ? 30 : 30), what + ": fio read back only " + rd.group(0) + ":\n" + out);
    }
}
