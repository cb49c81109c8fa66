package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * A file unlinked while a process holds it open, as on the kernel's ext4: it has no name any more
 * (nlink 0, no {@code .fuse_hidden*} stand-in in the directory, the directory can be removed), it is
 * still read and written through the descriptor, its blocks stay allocated until the last close
 * (or the holder's death), and then come back. The image is e2fsck-clean afterwards and the kernel
 * finds no trace of the file.
 *
 * <p>libfuse 2 renames such a file to {@code .fuse_hidden*} instead of unlinking it, and ext4j
 * turns that rename into the real unlink (the orphan list). The checks that would see a hidden
 * name are collected as "problems", so that the rest of the behaviour is still checked and
 * reported in the same run.
 */
class OpenUnlinkedIT extends FuseTestBase {
    private static final long MIB = 1 << 20;

    @Test
    void anUnlinkedOpenFileLivesOnUntilItIsClosed() throws IOException {
        Path dir = newDir("close");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "64M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        List<String> problems = new ArrayList<>();
        String statfsAtEnd;

        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Map<String, Long> initial = ShellViews.statfsNumbers(mnt);
            Path sub = mnt.resolve("dir");
            Path victim = sub.resolve("victim");
            Tools.run(Tools.SHORT, "mkdir", sub.toString()).requireOk();
            Map<String, Long> withDir = ShellViews.statfsNumbers(mnt);
            long blocksPerMib = MIB / withDir.get("bsize");

            try (Holder h = Holder.start(dir.resolve("holder.err"))) {
                assertEquals("ok", h.ask("open " + victim));
                assertEquals("ok size=" + MIB, h.ask("write 1"));
                assertEquals("ok", h.ask("fsync"));
                long withFile = bfree(mnt);
                assertTrue(withFile <= withDir.get("bfree") - blocksPerMib, "1 MiB written and fsynced, but df free went only from "
                        + withDir.get("bfree") + " to " + withFile + " blocks");

                assertEquals("ok", h.ask("unlink " + victim));
                assertEquals("ok nlink=0 size=" + MIB, h.ask("fstat"), "fstat of the open fd after unlink");
                List<String> listing = ls(sub);
                if (!listing.equals(List.of(".", ".."))) {
                    problems.add("ls -a of the directory after unlinking the open file shows " + listing
                            + " (expected only . and ..: the unlinked file must have no name, as on the kernel)");
                }
                long afterUnlink = bfree(mnt);
                assertTrue(afterUnlink <= withFile, "df free went up from " + withFile + " to " + afterUnlink
                        + " blocks on unlink although the file is still open");

                assertEquals("ok size=" + 2 * MIB, h.ask("write 1"), "appending through the fd of the unlinked file");
                assertEquals("ok", h.ask("verify"), "reading the unlinked file back through its fd");
                assertEquals("ok nlink=0 size=" + 2 * MIB, h.ask("fstat"));
                long afterAppend = bfree(mnt);
                assertTrue(afterAppend <= afterUnlink - blocksPerMib, "df free after appending 1 MiB to the unlinked file: "
                        + afterUnlink + " -> " + afterAppend + " blocks");

                // The name is free again: a new file under it is another file.
                Tools.bash(Tools.SHORT, "echo new > \"$1\"", victim.toString()).requireOk();
                assertEquals("new\n", Tools.run(Tools.SHORT, "cat", victim.toString()).requireOk().stdout());
                assertEquals("ok", h.ask("verify"), "the unlinked file's data after a new file took its name");
                Tools.run(Tools.SHORT, "rm", victim.toString()).requireOk();
                assertEquals("ok", h.ask("verify"), "the unlinked file's data after the new file was removed too");

                Tools.Result rmdir = Tools.run(Tools.SHORT, "rmdir", sub.toString());
                if (!rmdir.ok()) {
                    problems.add("rmdir of the directory that held the unlinked open file: " + rmdir.output()
                            + " (expected success: the directory is empty, as on the kernel)");
                }
                assertEquals("ok", h.ask("verify"), "reading the unlinked file after rmdir of its directory");
                assertTrue(bfree(mnt) < withDir.get("bfree") - blocksPerMib, "space came back before the file was closed");

                assertEquals("ok", h.ask("close"));
            }

            // Closing the last fd frees the inode and its blocks (FUSE's release is asynchronous: wait for it).
            boolean dirLeft = Tools.run(Tools.SHORT, "test", "-e", sub.toString()).ok();
            Map<String, Long> expected = dirLeft ? withDir : initial;
            awaitFreeCounts(mnt, expected);
            List<String> rootListing = ls(mnt);
            List<String> expectedRoot = dirLeft ? List.of(".", "..", "dir", "lost+found") : List.of(".", "..", "lost+found");
            assertEquals(expectedRoot, rootListing, "ls -a of the mount after close");
            if (dirLeft) {
                assertEquals(List.of(".", ".."), ls(sub), "ls -a of the directory after close");
            }
            statfsAtEnd = ShellViews.statfs(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        checkWithTheKernel(image, dir, statfsAtEnd);
        assertTrue(problems.isEmpty(), "an unlinked open file is not an orphan inode:\n  " + String.join("\n  ", problems));
    }

    /**
     * A FUSE mount with an open file cannot be unmounted (EBUSY), so the nearest thing to a crash
     * with an open unlinked file is the holder dying: its descriptors are released and the space must
     * come back.
     */
    @Test
    void killingTheHolderOfAnUnlinkedFileGivesItsSpaceBack() throws IOException {
        Path dir = newDir("kill");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "64M", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        List<String> problems = new ArrayList<>();
        String statfsAtEnd;

        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Map<String, Long> initial = ShellViews.statfsNumbers(mnt);
            long blocksPerMib = MIB / initial.get("bsize");
            Path victim = mnt.resolve("victim");
            try (Holder h = Holder.start(dir.resolve("holder.err"))) {
                assertEquals("ok", h.ask("open " + victim));
                assertEquals("ok size=" + 4 * MIB, h.ask("write 4"));
                assertEquals("ok", h.ask("fsync"));
                assertEquals("ok", h.ask("unlink " + victim));
                assertEquals("ok nlink=0 size=" + 4 * MIB, h.ask("fstat"));
                List<String> listing = ls(mnt);
                if (!listing.equals(List.of(".", "..", "lost+found"))) {
                    problems.add("ls -a after unlinking the open file shows " + listing + " (expected . .. lost+found)");
                }
                long held = bfree(mnt);
                assertTrue(held <= initial.get("bfree") - 4 * blocksPerMib, "4 MiB are held by the unlinked file, but df free is "
                        + held + " of " + initial.get("bfree") + " blocks");

                h.kill();
            }
            awaitFreeCounts(mnt, initial);
            assertEquals(List.of(".", "..", "lost+found"), ls(mnt), "ls -a after the holder died");
            statfsAtEnd = ShellViews.statfs(mnt);
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);
        checkWithTheKernel(image, dir, statfsAtEnd);
        assertTrue(problems.isEmpty(), "an unlinked open file is not an orphan inode:\n  " + String.join("\n  ", problems));
    }

    private static long bfree(Path mnt) {
        return ShellViews.statfsNumbers(mnt).get("bfree");
    }

    /** {@code ls -a DIR}, one name per line, in ls's order. */
    private static List<String> ls(Path dir) {
        return Tools.run(Tools.SHORT, "ls", "-a", dir.toString()).requireOk().stdout().lines().toList();
    }

    private static void awaitFreeCounts(Path mnt, Map<String, Long> expected) {
        await("free blocks and inodes back to " + expected).atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(200))
                .untilAsserted(() -> {
                    Map<String, Long> now = ShellViews.statfsNumbers(mnt);
                    assertEquals(expected.get("bfree"), now.get("bfree"), "df free blocks");
                    assertEquals(expected.get("ffree"), now.get("ffree"), "df -i free inodes");
                });
    }

    /** The kernel finds neither the file nor a stand-in for it, and the same free counts. */
    private static void checkWithTheKernel(Path image, Path dir, String statfs) throws IOException {
        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            Tools.Result find = Tools.run(Tools.SHORT, "find", kmnt.toString(), "-name", "victim", "-o", "-name", ".fuse_hidden*").requireOk();
            assertEquals("", find.stdout(), "the kernel finds the unlinked file");
            assertEquals(ShellViews.statfs(kmnt), statfs, "statfs differs from the kernel's");
        }
    }

    /** A python3 process (holder.py) holding one file open, driven one command line at a time. */
    private static final class Holder implements AutoCloseable {
        private static final Duration ANSWER_TIMEOUT = Duration.ofSeconds(60);
        private final Process process;
        private final Writer commands;
        private final BlockingQueue<String> answers = new LinkedBlockingQueue<>();

        private Holder(Process process) {
            this.process = process;
            this.commands = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
            Thread reader = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                    String line;
                    while ((line = r.readLine()) != null) {
                        answers.add(line);
                    }
                } catch (IOException e) {
                    // the holder is gone
                }
            }, "holder-stdout");
            reader.setDaemon(true);
            reader.start();
        }

        static Holder start(Path stderr) throws IOException {
            Process p = new ProcessBuilder(Tools.python3(), "-c", Tools.resource("holder.py"))
                    .redirectError(stderr.toFile()).start();
            return new Holder(p);
        }

        /** Sends one command and returns the answer line. */
        String ask(String command) {
            try {
                commands.write(command + "\n");
                commands.flush();
                String answer = answers.poll(ANSWER_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
                if (answer == null) {
                    throw new AssertionError("the holder did not answer '" + command + "' within " + ANSWER_TIMEOUT.toSeconds() + " s"
                            + (process.isAlive() ? "" : "; it exited " + process.exitValue()));
                }
                return answer;
            } catch (IOException e) {
                throw new UncheckedIOException("the holder is gone (" + command + ")", e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted", e);
            }
        }

        /** SIGKILL, and wait until the process is gone (its descriptors closed by the kernel). */
        void kill() {
            Tools.killTree(process.toHandle());
            try {
                assertTrue(process.waitFor(30, TimeUnit.SECONDS), "the holder survived SIGKILL");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted", e);
            }
        }

        @Override
        public void close() {
            if (process.isAlive()) {
                kill();
            }
        }
    }
}
