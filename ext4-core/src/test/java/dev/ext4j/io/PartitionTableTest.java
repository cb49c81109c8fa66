package dev.ext4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.zip.CRC32;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * MBR and GPT tables made by sfdisk, read back partition by partition; then hostile tables (entries
 * past the image's end, overlapping entries, damaged GPT headers and entry arrays, EBR chains that
 * loop or leave the extended partition, random bytes): each gives a clear answer, never an
 * unchecked exception or a hang.
 */
class PartitionTableTest {
    private static final String LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    private static final int MIB = 1 << 20;

    @TempDir
    Path work;

    /** An image of {@code mib} MiB partitioned by {@code sfdisk} from {@code script}. */
    private byte[] sfdisk(int mib, String script) throws IOException {
        Path img = work.resolve("disk.img");
        Files.deleteIfExists(img);
        Images.runOk(List.of("truncate", "-s", mib + "M", img.toString()));
        Images.runOk(List.of("bash", "-c", "printf '" + script + "' | sfdisk -q \"$1\"", "sfdisk", img.toString()));
        return Files.readAllBytes(img);
    }

    private static final String MBR_SCRIPT = "label: dos\\n"
            + "start=2048, size=4096, type=83\\n"
            + "size=2048, type=c\\n"
            + "type=5\\n"
            + "size=2048, type=83\\n"
            + "size=1024, type=82\\n";

    private static final String GPT_SCRIPT = "label: gpt\\n"
            + "start=2048, size=4096, type=L, name=\"root\"\\n"
            + "size=2048, type=U\\n"
            + "start=10240, size=2048, type=L, name=\"home\"\\n";

    private static PartitionTable read(byte[] img) throws Ext4Exception {
        return assertTimeoutPreemptively(Duration.ofSeconds(10), () -> PartitionTable.read(new MemoryBlockDevice(img, true)));
    }

    private static String numbers(PartitionTable t) {
        return t.partitions().stream().map(p -> String.valueOf(p.number())).collect(Collectors.joining(","));
    }

    @Test
    void mbrPrimaryAndLogicalPartitionsAreNumberedAsLinuxDoes() throws Exception {
        PartitionTable t = read(sfdisk(8, MBR_SCRIPT));
        assertEquals(PartitionTable.Scheme.MBR, t.scheme());
        assertEquals("1,2,3,5,6", numbers(t));
        assertEquals(List.of(), t.problems());
        PartitionTable.Partition p1 = t.partition(1);
        assertEquals(2048 * 512L, p1.start());
        assertEquals(4096 * 512L, p1.size());
        assertEquals("0x83", p1.type());
        assertEquals("Linux", p1.typeName());
        assertEquals("0x0c", t.partition(2).type());
        assertEquals(6144, t.partition(2).startSector());
        // sfdisk leaves a sector for each EBR: logical 5 starts after the extended partition's first EBR
        PartitionTable.Partition p5 = t.partition(5);
        assertEquals("0x83", p5.type());
        assertEquals(2048, p5.sectors());
        assertTrue(p5.startSector() > 8192, "logical 5 at " + p5.startSector());
        PartitionTable.Partition p6 = t.partition(6);
        assertEquals("Linux swap", p6.typeName());
        assertTrue(p6.startSector() >= p5.startSector() + p5.sectors());
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> t.partition(3));
        assertTrue(e.getMessage().contains("extended partition"), e.getMessage());
        e = Expect.errno(Errno.EINVAL, () -> t.partition(4));
        assertTrue(e.getMessage().contains("no partition 4") && e.getMessage().contains("1, 2, 3, 5, 6"), e.getMessage());
    }

    @Test
    void gptPartitionsWithTypesAndNames() throws Exception {
        PartitionTable t = read(sfdisk(8, GPT_SCRIPT));
        assertEquals(PartitionTable.Scheme.GPT, t.scheme());
        assertEquals(512, t.sectorSize());
        assertEquals("1,2,3", numbers(t));
        assertEquals(List.of(), t.problems());
        PartitionTable.Partition p1 = t.partition(1);
        assertEquals(LINUX, p1.type());
        assertEquals("Linux filesystem", p1.typeName());
        assertEquals("root", p1.name());
        assertEquals(2048 * 512L, p1.start());
        assertEquals(4096 * 512L, p1.size());
        assertEquals("EFI System", t.partition(2).typeName());
        assertEquals(6144, t.partition(2).startSector());
        assertEquals("home", t.partition(3).name());
        assertEquals(10240, t.partition(3).startSector());
    }

    @Test
    void aBareFilesystemImageHasNoTable() throws Exception {
        Path img = Images.mkfs(work.resolve("bare.img"), "4M", List.of(), null);
        PartitionTable t = read(Files.readAllBytes(img));
        assertEquals(PartitionTable.Scheme.NONE, t.scheme());
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> t.partition(1));
        assertTrue(e.getMessage().contains("no partition table"), e.getMessage());
        // a FAT boot sector has the 0x55aa signature too
        Path fat = work.resolve("fat.img");
        Images.runOk(List.of("mkfs.vfat", "-C", fat.toString(), "2048"));
        assertEquals(PartitionTable.Scheme.NONE, read(Files.readAllBytes(fat)).scheme());
    }

    // --- GPT damage ---

    private static ByteBuffer le(byte[] img) {
        return ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Recomputes the entry array CRC and the header CRC of the GPT header at {@code lba}. */
    private static void resealGpt(byte[] img, long lba) {
        ByteBuffer b = le(img);
        int h = (int) (lba * 512);
        int entries = (int) (b.getLong(h + GptHeader.PARTITION_ENTRY_LBA) * 512);
        int bytes = b.getInt(h + GptHeader.NUM_PARTITION_ENTRIES) * b.getInt(h + GptHeader.SIZEOF_PARTITION_ENTRY);
        CRC32 crc = new CRC32();
        crc.update(img, entries, bytes);
        b.putInt(h + GptHeader.PARTITION_ENTRY_ARRAY_CRC32, (int) crc.getValue());
        b.putInt(h + GptHeader.HEADER_CRC32, 0);
        crc.reset();
        crc.update(img, h, b.getInt(h + GptHeader.HEADER_SIZE));
        b.putInt(h + GptHeader.HEADER_CRC32, (int) crc.getValue());
    }

    private static long backupLba(byte[] img) {
        return img.length / 512 - 1;
    }

    /** Sets entry {@code index} (0-based) of both entry arrays to LBAs first..last and reseals both headers. */
    private static void setGptEntry(byte[] img, int index, long first, long last) {
        ByteBuffer b = le(img);
        for (long lba : new long[] {1, backupLba(img)}) {
            int h = (int) (lba * 512);
            int e = (int) (b.getLong(h + GptHeader.PARTITION_ENTRY_LBA) * 512) + index * 128;
            b.putLong(e + GptEntry.STARTING_LBA, first);
            b.putLong(e + GptEntry.ENDING_LBA, last);
            resealGpt(img, lba);
        }
    }

    @Test
    void aDamagedPrimaryGptHeaderFallsBackToTheBackup() throws Exception {
        byte[] img = sfdisk(8, GPT_SCRIPT);
        img[512 + GptHeader.FIRST_USABLE_LBA] ^= 1; // the header CRC no longer matches
        PartitionTable t = read(img);
        assertEquals("1,2,3", numbers(t));
        assertEquals(2048 * 512L, t.partition(1).start());
        assertTrue(t.problems().size() == 1 && t.problems().get(0).contains("header crc32 stored"), t.problems().toString());
    }

    @Test
    void bothGptHeadersDamagedIsAClearError() throws Exception {
        byte[] img = sfdisk(8, GPT_SCRIPT);
        img[512 + GptHeader.FIRST_USABLE_LBA] ^= 1;
        img[(int) (backupLba(img) * 512) + GptHeader.FIRST_USABLE_LBA] ^= 1;
        Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> read(img));
        assertTrue(e.getMessage().contains("damaged GPT") && e.getMessage().contains("header crc32 stored"), e.getMessage());
    }

    @Test
    void aDamagedEntryArrayIsNotTrusted() throws Exception {
        byte[] img = sfdisk(8, GPT_SCRIPT);
        img[2 * 512 + GptEntry.STARTING_LBA] ^= 1; // primary array: partition 1's start
        PartitionTable t = read(img);
        assertEquals(2048, t.partition(1).startSector(), "the backup array holds the true start");
        assertTrue(t.problems().get(0).contains("entry array fails its CRC32"), t.problems().toString());
        int backupArray = (int) (le(img).getLong((int) (backupLba(img) * 512) + GptHeader.PARTITION_ENTRY_LBA) * 512);
        img[backupArray + GptEntry.STARTING_LBA] ^= 1;
        Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> read(img));
        assertTrue(e.getMessage().contains("entry array fails its CRC32"), e.getMessage());
    }

    @Test
    void gptEntriesPastTheEndOrOverlappingAreRefusedByNumber() throws Exception {
        byte[] img = sfdisk(8, GPT_SCRIPT);
        long sectors = img.length / 512;
        setGptEntry(img, 0, 2048, sectors + 100); // partition 1 past the image's end
        setGptEntry(img, 2, 7000, 12287); // partition 3 over partition 2 (6144..8191)
        PartitionTable t = read(img);
        assertEquals("1,2,3", numbers(t));
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> t.partition(1));
        assertTrue(e.getMessage().contains("past the end of the image"), e.getMessage());
        e = Expect.errno(Errno.EINVAL, () -> t.partition(2));
        assertTrue(e.getMessage().contains("overlaps partition 3"), e.getMessage());
        e = Expect.errno(Errno.EINVAL, () -> t.partition(3));
        assertTrue(e.getMessage().contains("overlaps partition 2"), e.getMessage());
        setGptEntry(img, 0, -5, 100); // a start that is 2^64 - 5 unsigned
        e = Expect.errno(Errno.EINVAL, () -> read(img).partition(1));
        assertTrue(e.getMessage().contains("18446744073709551611"), e.getMessage());
        setGptEntry(img, 0, 4000, 3000);
        e = Expect.errno(Errno.EINVAL, () -> read(img).partition(1));
        assertTrue(e.getMessage().contains("ends before it starts"), e.getMessage());
    }

    @Test
    void aHugeEntryArrayOfOverlappingEntriesIsReadQuickly() throws Exception {
        byte[] img = sfdisk(8, GPT_SCRIPT);
        ByteBuffer b = le(img);
        int entries = (int) (PartitionTable.MAX_GPT_ARRAY_BYTES / 128);
        b.putInt(512 + GptHeader.NUM_PARTITION_ENTRIES, entries);
        byte[] type = Arrays.copyOfRange(img, 2 * 512, 2 * 512 + 16); // partition 1's type GUID
        for (int i = 0; i < entries; i++) {
            int e = 2 * 512 + i * 128;
            System.arraycopy(type, 0, img, e, 16);
            b.putLong(e + GptEntry.STARTING_LBA, 40 + i % 1000);
            b.putLong(e + GptEntry.ENDING_LBA, 2000 + i % 1000);
        }
        b.putLong(512 + GptHeader.FIRST_USABLE_LBA, 34);
        resealGpt(img, 1);
        PartitionTable t = read(img);
        assertEquals(entries, t.partitions().size());
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> t.partition(entries));
        assertTrue(e.getMessage().contains("overlaps partition"), e.getMessage());
    }

    @Test
    void aGptWithoutItsProtectiveMbrIsIgnoredAsLinuxDoes() throws Exception {
        byte[] img = sfdisk(8, GPT_SCRIPT);
        img[446 + MbrSector.E_TYPE] = (byte) 0x83;
        PartitionTable t = read(img);
        assertEquals(PartitionTable.Scheme.MBR, t.scheme());
        assertTrue(t.problems().get(0).contains("no protective entry"), t.problems().toString());
    }

    // --- MBR damage ---

    private static void mbrEntry(byte[] img, long sector, int i, int type, long start, long sectors) {
        ByteBuffer b = le(img);
        int e = (int) (sector * 512) + MbrSector.ENTRIES + i * MbrSector.ENTRY_SIZE;
        img[e + MbrSector.E_TYPE] = (byte) type;
        b.putInt(e + MbrSector.E_START, (int) start);
        b.putInt(e + MbrSector.E_SECTORS, (int) sectors);
        img[(int) (sector * 512) + 510] = 0x55;
        img[(int) (sector * 512) + 511] = (byte) 0xAA;
    }

    @Test
    void mbrEntriesPastTheEndOrOverlappingAreRefusedByNumber() throws Exception {
        byte[] img = new byte[4 * MIB]; // 8192 sectors
        mbrEntry(img, 0, 0, 0x83, 2048, 2048);
        mbrEntry(img, 0, 1, 0x83, 3000, 1000); // inside partition 1
        mbrEntry(img, 0, 2, 0x83, 6000, 0xFFFFFFFFL); // far past the end
        mbrEntry(img, 0, 3, 0x83, 0, 100); // over the table itself
        PartitionTable t = read(img);
        assertEquals("1,2,3,4", numbers(t));
        assertTrue(Expect.errno(Errno.EINVAL, () -> t.partition(1)).getMessage().contains("overlaps partition 2"));
        assertTrue(Expect.errno(Errno.EINVAL, () -> t.partition(2)).getMessage().contains("overlaps partition 1"));
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> t.partition(3));
        assertTrue(e.getMessage().contains("past the end of the image (8192 sectors)"), e.getMessage());
        e = Expect.errno(Errno.EINVAL, () -> t.partition(4));
        assertTrue(e.getMessage().contains("over the partition table"), e.getMessage());
    }

    @Test
    void aLoopInTheExtendedChainStopsTheWalk() throws Exception {
        byte[] img = new byte[4 * MIB];
        mbrEntry(img, 0, 0, 0x05, 2048, 4096);
        mbrEntry(img, 2048, 0, 0x83, 1, 1000); // logical 5 at 2049
        mbrEntry(img, 2048, 1, 0x05, 1100, 1000); // next EBR at 2048 + 1100
        mbrEntry(img, 3148, 0, 0x83, 1, 500); // logical 6 at 3149
        mbrEntry(img, 3148, 1, 0x05, 0, 1000); // next EBR: back to the first
        PartitionTable t = read(img);
        assertEquals("1,5,6", numbers(t));
        assertEquals(2049, t.partition(5).startSector());
        assertEquals(3149, t.partition(6).startSector());
        assertTrue(t.problems().get(0).contains("loops back to sector 2048"), t.problems().toString());
        // a link out of the extended partition, and one to a sector without a signature
        mbrEntry(img, 3148, 1, 0x05, 1_000_000, 10);
        assertTrue(read(img).problems().get(0).contains("lies outside extended partition 1"), read(img).problems().toString());
        mbrEntry(img, 3148, 1, 0x05, 3000, 10);
        assertTrue(read(img).problems().get(0).contains("no 0x55aa signature"), read(img).problems().toString());
        // a logical partition reaching past its extended partition
        mbrEntry(img, 3148, 0, 0x83, 1, 5000);
        Ext4Exception e = Expect.errno(Errno.EINVAL, () -> read(img).partition(6));
        assertTrue(e.getMessage().contains("past the end of extended partition 1"), e.getMessage());
    }

    @Test
    void randomTablesGiveAnswersNotExceptions() {
        Random rnd = new Random(18);
        for (int round = 0; round < 300; round++) {
            byte[] img = new byte[256 * 1024]; // 512 sectors
            boolean gpt = round % 2 == 0;
            for (int i = 0; i < 4; i++) {
                int type = gpt && i == 0 ? 0xEE : new int[] {0, 0x05, 0x0F, 0x83, 0x85, 0x0c}[rnd.nextInt(6)];
                mbrEntry(img, 0, i, type, rnd.nextInt(600), rnd.nextBoolean() ? rnd.nextInt(600) : rnd.nextInt());
            }
            for (int s = 1; s < 512; s += 1 + rnd.nextInt(40)) {
                // EBRs with random links, and random bytes
                mbrEntry(img, s, 0, rnd.nextInt(256), rnd.nextInt(600), rnd.nextInt(600));
                mbrEntry(img, s, 1, 0x05, rnd.nextInt(600), rnd.nextInt(600));
            }
            if (gpt) {
                ByteBuffer b = le(img);
                b.putLong(512, GptHeader.SIGNATURE_VALUE);
                b.putInt(512 + GptHeader.HEADER_SIZE, 92);
                b.putLong(512 + GptHeader.MY_LBA, 1);
                b.putLong(512 + GptHeader.FIRST_USABLE_LBA, rnd.nextInt(40));
                b.putLong(512 + GptHeader.LAST_USABLE_LBA, rnd.nextInt(600));
                b.putLong(512 + GptHeader.PARTITION_ENTRY_LBA, 2 + rnd.nextInt(3));
                b.putInt(512 + GptHeader.NUM_PARTITION_ENTRIES, rnd.nextInt(200));
                b.putInt(512 + GptHeader.SIZEOF_PARTITION_ENTRY, rnd.nextBoolean() ? 128 : rnd.nextInt(300));
                for (int e = 2 * 512; e < 40 * 512; e += 8) {
                    b.putLong(e, rnd.nextInt(4) == 0 ? rnd.nextLong() : rnd.nextInt(700));
                }
                resealGpt(img, 1);
            }
            try {
                PartitionTable t = read(img);
                for (int n = 1; n < 12; n++) {
                    try {
                        PartitionTable.Partition p = t.partition(n);
                        assertTrue(p.start() >= 0 && p.start() + p.size() <= img.length, "usable partition " + p + " in the image");
                    } catch (Ext4Exception e) {
                        assertEquals(Errno.EINVAL, e.errno(), e.toString());
                    }
                }
            } catch (Ext4Exception e) {
                assertEquals(Errno.EUCLEAN, e.errno(), "round " + round + ": " + e);
            }
        }
    }
}
