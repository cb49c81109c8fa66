package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * A 1 GiB file written sequentially ({@code dd bs=1M count=1024 conv=fsync}) through the mount of a
 * 2 GiB 4k image lies in long extents: at most {@link #MAX_LEAF_EXTENTS} leaf extents (the minimum
 * is 8: an initialized extent holds at most 32768 blocks, 128 MiB), none of them left unwritten,
 * and it holds exactly the bytes written. The data is an AES-CTR keystream ({@code openssl enc} over
 * /dev/zero with a fixed pass phrase), so every block differs and a block written to the wrong place
 * is caught by the checksum, which is compared through the kernel and through a second ext4j mount.
 */
class LongExtentsIT extends FuseTestBase {
    private static final int MIB_COUNT = 1024;
    private static final int MAX_LEAF_EXTENTS = 16;
    private static final Duration DD_TIMEOUT = Duration.ofMinutes(6);
    /** A deterministic stream: AES-128-CTR of zeros under a key derived from a fixed pass phrase. */
    private static final String STREAM = "openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:ext4j-long-extents -in /dev/zero 2>/dev/null";

    @Test
    void aSequentialGigabyteLiesInFewLongExtents() throws IOException {
        Path dir = newDir("long");
        Path image = dir.resolve("disk.img");
        Tools.mkfs(null, image, "2G", List.of("-b", "4096"));
        Path mnt = Files.createDirectories(dir.resolve("mnt"));
        long bytes = (long) MIB_COUNT << 20;

        String expected = Tools.bash(DD_TIMEOUT, STREAM + " | head -c " + bytes + " | sha256sum").requireOk().stdout().split(" ")[0];
        try (MountedImage m = MountedImage.mount(image, mnt, dir.resolve("server.log"))) {
            Tools.bash(DD_TIMEOUT, STREAM + " | dd of=\"$1\" bs=1M count=" + MIB_COUNT + " iflag=fullblock conv=fsync status=none",
                    mnt.resolve("file").toString()).requireOk();
            assertEquals(bytes, Files.size(mnt.resolve("file")), "size through the mount");
            assertEquals(List.of(), m.unexpectedFailures(), "server log");
        }
        Tools.e2fsckClean(image);

        String ex = Tools.debugfs(image, "ex /file");
        List<String> leaves = leafExtents(ex);
        assertTrue(!leaves.isEmpty(), "debugfs ex /file shows no extents:\n" + ex);
        assertTrue(leaves.size() <= MAX_LEAF_EXTENTS, "a sequential " + MIB_COUNT + " MiB file has " + leaves.size()
                + " leaf extents (at most " + MAX_LEAF_EXTENTS + " expected):\n" + ex);
        long mapped = 0;
        long nextLogical = 0;
        for (String leaf : leaves) {
            assertTrue(!leaf.contains("Uninit"), "an extent of the finished file is still unwritten: " + leaf + "\n" + ex);
            Matcher mm = LEAF_RANGE.matcher(leaf);
            assertTrue(mm.find(), "cannot parse leaf line: " + leaf);
            long first = Long.parseLong(mm.group(1));
            long last = Long.parseLong(mm.group(2));
            assertEquals(nextLogical, first, "the leaves cover the file without holes:\n" + ex);
            nextLogical = last + 1;
            mapped += last - first + 1;
        }
        assertEquals(bytes / 4096, mapped, "blocks mapped by the leaves:\n" + ex);
        System.out.println("LongExtentsIT: " + MIB_COUNT + " MiB in " + leaves.size() + " leaf extents");

        Path kmnt = Files.createDirectories(dir.resolve("kernel"));
        try (KernelMount k = KernelMount.attempt(image, kmnt)) {
            assertTrue(k.mounted(), "the kernel cannot mount the image: " + k.result().describe());
            assertEquals(expected, Tools.sha256(kmnt.resolve("file")), "content of the file as the kernel reads it");
        }
        Path mnt2 = Files.createDirectories(dir.resolve("mnt2"));
        try (MountedImage m = MountedImage.mount(image, mnt2, dir.resolve("server2.log"), "ro")) {
            assertEquals(expected, Tools.sha256(mnt2.resolve("file")), "content of the file read through ext4j after remount");
        }
    }

    /** "Level Entries Logical Physical Length Flags": a line per node entry, starting "depth/ max". */
    private static final Pattern LEVEL = Pattern.compile("^\\s*(\\d+)/\\s*(\\d+)\\s");
    private static final Pattern LEAF_RANGE = Pattern.compile("^\\s*\\d+/\\s*\\d+\\s+\\d+/\\s*\\d+\\s+(\\d+)\\s*-\\s*(\\d+)\\s");

    /** The lines of debugfs {@code ex} output that describe leaf extents (level equal to the tree's depth). */
    static List<String> leafExtents(String ex) {
        List<String> leaves = new ArrayList<>();
        for (String line : ex.split("\n")) {
            Matcher m = LEVEL.matcher(line);
            if (m.find() && m.group(1).equals(m.group(2))) {
                leaves.add(line);
            }
        }
        return leaves;
    }
}
