package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.format.Inode;
import dev.ext4j.io.MemoryBlockDevice;
import dev.ext4j.io.ForwardingDevice;
import dev.ext4j.testutil.Images;
import dev.ext4j.testutil.RecordingDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Migrate} of a file in thousands of fragments on a 1 KiB-block image with the smallest
 * journal mkfs makes (1024 blocks): the tree is built in steps whose handles keep to their credits
 * (the unit tests run with {@code ext4j.creditcheck}), and a crash at any point of the migration
 * leaves an image that the next mount's replay and orphan cleanup make e2fsck-clean, with the file
 * intact.
 */
class MigrateJournalTest {
    private static final int SMALL_FILES = 5300;
    private static final int BIG_BLOCKS = 2700;

    @TempDir
    Path work;

    private byte[] big;

    /**
     * ext3 (1 KiB blocks, one group, 1 MiB journal, block-mapped): 5300 one-block files, every
     * other one removed, then a 2700-block file written by debugfs into the holes, then the extent
     * feature turned on.
     */
    private Path fragmented() throws IOException {
        Path one = work.resolve("one");
        byte[] small = new byte[1024];
        Random rnd = new Random(5);
        rnd.nextBytes(small); // not zeros: debugfs writes those as a hole
        Files.write(one, small);
        big = new byte[BIG_BLOCKS * 1024];
        rnd.nextBytes(big);
        Path bigFile = Files.write(work.resolve("big"), big);
        Path img = Images.mkfs(work.resolve("frag.img"), "8M", List.of("-t", "ext3", "-b", "1024", "-J", "size=1", "-N", "5400"), null);
        List<String> cmds = new ArrayList<>();
        for (int i = 0; i < SMALL_FILES; i++) {
            cmds.add("write " + one + " f" + i);
        }
        for (int i = 0; i < SMALL_FILES; i += 2) {
            cmds.add("rm f" + i);
        }
        cmds.add("write " + bigFile + " big");
        Images.debugfsCmds(img, true, cmds);
        Images.runOk(List.of("tune2fs", "-O", "extent", img.toString()));
        Images.assertClean(img);
        List<Long> blocks = Images.blocks(img, "/big");
        long fragments = 1;
        for (int i = 1; i < blocks.size(); i++) {
            fragments += blocks.get(i) == blocks.get(i - 1) + 1 ? 0 : 1;
        }
        assertTrue(fragments > 2000, "the file is in " + fragments + " pieces");
        return img;
    }

    private static byte[] readAll(Ext4FileSystem fs, long ino) throws Exception {
        byte[] out = new byte[(int) fs.stat(ino).size()];
        fs.read(ino, 0, ByteBuffer.wrap(out));
        return out;
    }

    private static long bigIno(Ext4FileSystem fs) throws Exception {
        return fs.resolve("/big".getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void aFragmentedFileMigratesInStepsWithoutAbortingTheJournal() throws Exception {
        Path img = fragmented();
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long ino = bigIno(fs);
            fs.migrate(ino);
            assertTrue(fs.inode(ino).inode().hasFlag(Inode.EXTENTS_FL));
            assertArrayEquals(big, readAll(fs, ino));
            fs.sync(); // the journal still commits: it was not aborted
        }
        Images.assertClean(img);
        assertTrue(Images.stat(img, "/big").contains("EXTENTS:"));
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(big, readAll(fs, bigIno(fs)));
        }
    }


    /**
     * The migration commits after every 200 extents (a test hook syncs between steps, where the
     * restarted handle lets a commit run); the image cut after any write of the run is replayed
     * by a read-write mount (which frees the temporary inode from the orphan list) and is then
     * e2fsck-clean, with the file's contents whole, block-mapped or extent-mapped.
     */
    @Test
    void aCrashDuringTheMigrationLeavesACleanImageAndTheFileIntact() throws Exception {
        byte[] base = Files.readAllBytes(fragmented());
        RecordingDevice dev = new RecordingDevice(base.clone());
        int start;
        int end;
        int[] steps = {0};
        MountOptions noTimer = MountOptions.defaults().withWriteback(MountOptions.DEFAULT_CACHE_BYTES, 3_600_000, 30_000);
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, noTimer)) {
            long ino = bigIno(fs);
            fs.sync();
            start = dev.writes.size();
            fs.sbi().migration(() -> { }, () -> {
                if (++steps[0] % 200 == 0) {
                    fs.sync();
                }
            }).run(ino);
            fs.sync();
            end = dev.writes.size();
        }
        assertTrue(steps[0] > 2000, steps[0] + " steps");
        TreeSet<Integer> points = new TreeSet<>();
        Random rnd = new Random(3);
        for (int i = 0; i <= 16; i++) {
            points.add(start + (end - start) * i / 16);
        }
        while (points.size() < 30) {
            points.add(start + rnd.nextInt(end - start + 1));
        }
        Path img = work.resolve("cut.img");
        int extentMapped = 0;
        for (int n : points) {
            String what = "cut after write " + n + " (migration: writes " + start + ".." + end + ")";
            Files.write(img, dev.cut(base, n));
            try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
                assertFalse(fs.isReadOnly(), what + ": " + fs.messages());
            }
            List<String> findings = new ArrayList<>();
            Images.Result r = Images.fsckCheck(img);
            for (String l : r.all().split("\n")) {
                String t = l.trim();
                if (t.matches("Free (blocks|inodes) count wrong \\(\\d+, counted=\\d+\\)\\.") || t.equals("Fix? no")
                        || t.isEmpty() || t.startsWith("e2fsck ") || t.startsWith("Pass ") || t.contains(img.toString())
                        || Images.isClockNote(t)) {
                    continue;
                }
                findings.add(t);
            }
            assertEquals(0, r.exitCode(), what + ": e2fsck -fn: " + r.all());
            assertTrue(findings.isEmpty(), what + ": e2fsck -fn found " + findings);
            try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
                long ino = bigIno(fs);
                assertArrayEquals(big, readAll(fs, ino), what);
                assertEquals(0, fs.superblock().lastOrphan(), what + ": the orphan list is empty after the mount");
                if (fs.inode(ino).inode().hasFlag(Inode.EXTENTS_FL)) {
                    extentMapped++;
                }
            }
        }
        assertTrue(extentMapped > 0 && extentMapped < points.size(), extentMapped + " of " + points.size()
                + " cuts found the file extent-mapped: cuts fell before and after the swap");
    }
}
