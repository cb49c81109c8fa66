package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Images for fuse-driver's tests, made and checked with e2fsprogs (mkfs.ext4, tune2fs, e2fsck),
 * as ext4-core's testutil.Images does for the core's tests (whose test classes this module cannot
 * see). A missing tool fails the test: these are not skipped.
 */
final class TestImages {
    private static final long TIMEOUT_SECONDS = 120;

    private TestImages() {
    }

    /** {@code mkfs.ext4 -q -F ARGS [-d srcDir] img size}; srcDir may be null. */
    static Path mkfs(Path img, String size, List<String> args, Path srcDir) {
        List<String> cmd = new ArrayList<>(List.of("mkfs.ext4", "-q", "-F"));
        cmd.addAll(args);
        if (srcDir != null) {
            cmd.addAll(List.of("-d", srcDir.toString()));
        }
        cmd.addAll(List.of(img.toString(), size));
        runOk(cmd);
        return img;
    }

    /** Runs {@code cmd} (its first word looked up in PATH, /sbin and /usr/sbin) and requires exit code 0; its output. */
    static String runOk(List<String> cmd) {
        String[] r = run(cmd);
        if (!r[0].equals("0")) {
            throw new IllegalStateException(cmd + " exited with " + r[0] + ":\n" + r[1]);
        }
        return r[1];
    }

    /** Asserts that {@code e2fsck -fn} finds nothing to fix. */
    static void assertClean(Path img) {
        String[] r = run(List.of("e2fsck", "-fn", img.toString()));
        assertEquals("0", r[0], () -> "e2fsck -fn " + img + ":\n" + r[1]);
    }

    /** Exit code and the output (stdout and stderr together). */
    private static String[] run(List<String> cmd) {
        List<String> full = new ArrayList<>(cmd);
        full.set(0, tool(full.get(0)).toString());
        ProcessBuilder pb = new ProcessBuilder(full).redirectErrorStream(true);
        pb.environment().put("LC_ALL", "C");
        try {
            Process p = pb.start();
            p.getOutputStream().close();
            // the output is small: read it to the end, which is also where the process ends
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.ISO_8859_1);
            if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("timed out: " + full);
            }
            return new String[] {Integer.toString(p.exitValue()), out};
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run " + full, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted: " + full, e);
        }
    }

    private static Path tool(String name) {
        List<String> dirs = new ArrayList<>();
        String path = System.getenv("PATH");
        if (path != null) {
            dirs.addAll(List.of(path.split(":")));
        }
        dirs.addAll(List.of("/sbin", "/usr/sbin", "/bin", "/usr/bin"));
        for (String d : dirs) {
            Path c = d.isEmpty() ? null : Path.of(d, name);
            if (c != null && Files.isRegularFile(c) && Files.isExecutable(c)) {
                return c;
            }
        }
        throw new IllegalStateException("required tool '" + name + "' not found in PATH, /sbin or /usr/sbin; install e2fsprogs");
    }
}
