package dev.ext4j.journal;

import static dev.ext4j.journal.JournalFixture.assertNoWorseThan;
import static dev.ext4j.journal.JournalFixture.assertSameBlocks;
import static dev.ext4j.journal.JournalFixture.e2fsckReplayed;
import static dev.ext4j.journal.JournalFixture.hasFeature;
import static dev.ext4j.journal.JournalFixture.replayWithExt4j;
import static dev.ext4j.journal.JournalFixture.superblockAndJournal;
import static dev.ext4j.journal.JournalFixture.treeOf;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.Errno;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Journal replay at mount, checked against e2fsck's replay of a copy of the same image: every block
 * but the superblock's and the journal's must come out the same, e2fsck -fn must find nothing on
 * the ext4j replay that it does not find on its own, and the trees must read the same.
 */
class JournalReplayTest {
    @TempDir
    Path dir;

    private static int blockSize(Path img) {
        return Integer.parseInt(Images.dumpe2fsHeader(img).get("Block size"));
    }

    /** Replays {@code img} with ext4j and compares it with e2fsck's replay of a copy; returns the reference. */
    private Path replayAndCompare(Path img) throws Exception {
        assertTrue(hasFeature(img, "needs_recovery"), "the image needs recovery before the test");
        Path ref = e2fsckReplayed(img, dir);
        int bs = blockSize(img);
        Set<Long> skip = superblockAndJournal(img, bs);
        List<String> messages = replayWithExt4j(img);
        // what was replayed is said; an empty journal replays without a word (it is normal)
        assertTrue(messages.stream().anyMatch(m -> m.startsWith("journal replayed")) || messages.stream().noneMatch(m -> m.startsWith("journal")),
                "mount says what it replayed: " + messages);
        assertFalse(hasFeature(img, "needs_recovery"), "needs_recovery is cleared after the replay");
        assertSameBlocks(ref, img, bs, skip);
        assertNoWorseThan(ref, img);
        assertEquals(treeOf(ref), treeOf(img), "the trees after both replays");
        String start = Images.dumpe2fsHeader(img).get("Journal start");
        assertTrue(start == null || start.equals("0"), "the journal is empty after the replay (start " + start + ")");
        return ref;
    }

    @ParameterizedTest
    @ValueSource(strings = {"j_recover_csum2_32bit", "j_recover_csum2_64bit", "j_recover_csum3_64bit",
            "j_corrupt_commit_tid", "j_corrupt_descr_tid", "j_corrupt_revoke_csum", "j_corrupt_revoke_block"})
    void corpusReplayMatchesE2fsck(String name) throws Exception {
        replayAndCompare(JournalFixture.corpus(name, dir));
    }

    /**
     * Journals the kernel refuses to mount (it says why in dmesg); ext4j refuses them too and writes
     * nothing. Not here: j_corrupt_revoke_block, whose bad revoke block (r_count 0xffffffff) belongs to
     * a transaction that never committed. e2fsck and jbd2's recovery.c as published ignore it and
     * replay the committed one, and so does ext4j; the 6.18 kernel on the test machine refuses it.
     */
    static Stream<Arguments> refused() {
        return Stream.of(
                Arguments.of("j_corrupt_commit_csum", Errno.EUCLEAN),   // JBD2: journal transaction 3 is corrupt
                Arguments.of("j_corrupt_descr_csum", Errno.EBADMSG),    // JBD2: Invalid checksum found in transaction 3
                Arguments.of("j_corrupt_journal_block", Errno.EBADMSG), // JBD2: Invalid checksum recovering data block 1090
                Arguments.of("j_corrupt_revoke_rcount", Errno.EINVAL),  // JBD2: journal recovery failed
                Arguments.of("j_corrupt_sb_csum", Errno.EBADMSG),       // JBD2: journal checksum error
                Arguments.of("j_corrupt_sb_magic", Errno.EUCLEAN));     // JBD2: no valid journal superblock found
    }

    @ParameterizedTest
    @MethodSource("refused")
    void corruptJournalsAreRefusedWithoutWriting(String name, Errno errno) throws Exception {
        Path img = JournalFixture.corpus(name, dir);
        String before = Images.sha256(img);
        for (boolean ro : new boolean[] {false, true}) {
            var e = Expect.errno(errno, () -> Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(ro)).close());
            assertTrue(e.getMessage().contains("e2fsck"), "the refusal says to run e2fsck: " + e.getMessage());
            assertTrue(e.getMessage().contains("journal"), "the refusal names the journal: " + e.getMessage());
        }
        assertEquals(before, Images.sha256(img), "a refused mount leaves the image as it was");
    }

    @Test
    void fastCommitJournalReplaysTheLog() throws Exception {
        Path img = JournalFixture.corpus("j_recover_fast_commit", dir);
        replayWithExt4j(img);
        assertFalse(hasFeature(img, "needs_recovery"));
        Images.assertClean(img);
    }

    @Test
    void readOnlyReplayIsInMemory() throws Exception {
        Path img = JournalFixture.corpus("j_recover_csum3_64bit", dir);
        Path ref = e2fsckReplayed(img, dir);
        String before = Images.sha256(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertTrue(fs.isReadOnly());
            assertTrue(fs.messages().stream().anyMatch(m -> m.contains("in memory")), fs.messages().toString());
            assertEquals(treeOf(ref), JournalFixture.tree(fs), "the read-only mount shows the replayed tree");
        }
        assertEquals(before, Images.sha256(img), "a read-only mount leaves the image byte-identical");
        assertTrue(hasFeature(img, "needs_recovery"));
    }

    /** Transactions written with debugfs' journal commands: checksummed or not, 32- or 64-bit, 1k or 4k. */
    static Stream<Arguments> debugfsVariants() {
        return Stream.of(
                Arguments.of("4k-csum-64bit", List.of("-b", "4096", "-O", "metadata_csum,64bit"), "jo -c"),
                Arguments.of("4k-nocsum", List.of("-b", "4096", "-O", "^metadata_csum,^64bit"), "jo"),
                Arguments.of("1k-csum-32bit", List.of("-b", "1024", "-O", "metadata_csum,^64bit"), "jo -c"),
                Arguments.of("1k-64bit-nocsum", List.of("-b", "1024", "-O", "^metadata_csum,64bit"), "jo"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("debugfsVariants")
    void debugfsTransactionsWithRevokesAndAnUncommittedOne(String name, List<String> mkfs, String open) throws Exception {
        Path img = Images.mkfs(dir.resolve(name + ".img"), "16M", mkfs, null);
        int bs = blockSize(img);
        long blocks = Long.parseLong(Images.dumpe2fsHeader(img).get("Block count"));
        long a = blocks - 8, b = blocks - 7, c = blocks - 6;
        byte[] pat = new byte[3 * bs];
        new Random(42).nextBytes(pat);
        // the first block starts with the jbd2 magic, so the log must escape it
        pat[0] = (byte) 0xC0; pat[1] = 0x3B; pat[2] = 0x39; pat[3] = (byte) 0x98;
        Path data = dir.resolve("pat");
        Files.write(data, pat);
        Images.debugfs(img, open,
                "jw -b " + a + "," + b + " " + data,        // transaction 1: a, b
                "jw -r " + b + " " + data,                  // transaction 2: revokes b
                "jw -b " + c + "," + a + " " + data,        // transaction 3: c, a again
                "jw -b " + b + " -c " + data,               // transaction 4: never committed
                "jc");
        byte[] untouched = Images.readAt(img, b * bs, bs);
        Path roCopy = Images.copy(img, dir.resolve(name + ".ro.img"));
        String roSha = Images.sha256(roCopy);
        replayAndCompare(img);
        assertArrayEquals(java.util.Arrays.copyOfRange(pat, 0, bs), Images.readAt(img, c * bs, bs), "c from transaction 3");
        assertArrayEquals(java.util.Arrays.copyOfRange(pat, bs, 2 * bs), Images.readAt(img, a * bs, bs), "a from transaction 3");
        assertArrayEquals(untouched, Images.readAt(img, b * bs, bs), "b: revoked, then only in an uncommitted transaction");
        Images.assertClean(img);
        assertEquals(treeOf(img), treeOf(roCopy), "a read-only mount shows the same tree");
        assertEquals(roSha, Images.sha256(roCopy));
    }

    /**
     * v1 transaction checksums (COMPAT_CHECKSUM: crc32_be over descriptor and data blocks in the
     * commit block), which {@code jo -c} gives a journal without metadata_csum. A transaction of
     * only a revoke block gets a commit checksum from debugfs that neither e2fsck nor the kernel
     * accept ("journal transaction 2 is corrupt"): the kernel then refuses the mount, and so does ext4j.
     */
    @Test
    void v1CommitChecksums() throws Exception {
        Path img = Images.mkfs(dir.resolve("v1.img"), "16M", List.of("-b", "1024", "-O", "^metadata_csum,64bit"), null);
        long blocks = Long.parseLong(Images.dumpe2fsHeader(img).get("Block count"));
        long a = blocks - 8, b = blocks - 7, c = blocks - 6;
        byte[] pat = new byte[3 * 1024];
        new Random(1).nextBytes(pat);
        Path data = dir.resolve("pat");
        Files.write(data, pat);
        Path bad = Images.copy(img, dir.resolve("v1-revoke-only.img"));
        Images.debugfs(img, "jo -c", "jw -b " + a + "," + b + " " + data, "jw -b " + c + "," + a + " " + data, "jc");
        assertTrue(Images.dumpe2fsHeader(img).get("Journal features").contains("journal_checksum"));
        replayAndCompare(img);
        Images.assertClean(img);

        Images.debugfs(bad, "jo -c", "jw -b " + a + "," + b + " " + data, "jw -r " + b + " " + data, "jc");
        String before = Images.sha256(bad);
        var e = Expect.errno(Errno.EUCLEAN, () -> Ext4FileSystem.open(bad, MountOptions.defaults()).close());
        assertTrue(e.getMessage().contains("transaction 2"), e.getMessage());
        assertEquals(before, Images.sha256(bad));
    }

    /** A journal the kernel wrote: a copy of the image taken while it was mounted, after sync. */
    static Stream<Arguments> kernelVariants() {
        return Stream.of(
                Arguments.of("4k-csum-64bit", List.of("-O", "metadata_csum,64bit")),
                Arguments.of("4k-nocsum-32bit", List.of("-O", "^metadata_csum,^64bit")),
                Arguments.of("4k-nocsum-64bit", List.of("-O", "^metadata_csum,64bit")),
                Arguments.of("1k-csum", List.of("-b", "1024", "-O", "metadata_csum,64bit")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("kernelVariants")
    void kernelJournalReplaysLikeE2fsck(String name, List<String> mkfs) throws Exception {
        assumeTrue(JournalFixture.canKernelMount(), "kernel loop mounts need root and /dev/loop-control");
        List<String> args = new ArrayList<>(mkfs);
        args.addAll(List.of("-E", "lazy_itable_init=0,lazy_journal_init=0"));
        Path img = Images.mkfs(dir.resolve(name + ".img"), "32M", args, null);
        Path crashed = dir.resolve(name + ".crashed.img");
        Path mnt = dir.resolve("mnt");
        JournalFixture.withKernelMount(img, mnt, "loop,commit=600", () -> {
            Files.createDirectories(mnt.resolve("d/e"));
            Random rnd = new Random(7);
            for (int i = 0; i < 40; i++) {
                byte[] b = new byte[rnd.nextInt(20000)];
                rnd.nextBytes(b);
                Files.write(mnt.resolve((i % 2 == 0 ? "d/" : "d/e/") + "f" + i), b);
            }
            Files.createSymbolicLink(mnt.resolve("link"), Path.of("d/e/f1"));
            Images.runOk(List.of("sync"));
            Images.copy(img, crashed);
        });
        assertTrue(hasFeature(crashed, "needs_recovery"), "the copy taken while mounted needs recovery");
        Path roCopy = Images.copy(crashed, dir.resolve(name + ".ro.img"));
        Map<String, String> kernelTree = treeOf(img);
        replayAndCompare(crashed);
        Images.assertClean(crashed);
        assertEquals(kernelTree, treeOf(crashed), "the replayed copy reads as the image the kernel unmounted");
        assertEquals(kernelTree, treeOf(roCopy), "a read-only mount of the crashed copy shows the same tree");
    }
}
