package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ext4j.fuse.Ioctls.Command;
import dev.ext4j.resize.OnlineResize;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The ioctl numbers against their definitions in the uapi headers (_IOC(dir, type, nr, size)), the
 * fsx_xflags table both ways, and the argument structs on hand-made buffers.
 */
class IoctlsTest {
    private static final int IOC_NONE = 0, IOC_WRITE = 1, IOC_READ = 2;

    /** The _IOC() encoding of asm-generic/ioctl.h: nr in bits 0-7, type 8-15, size 16-29, direction 30-31. */
    private static int ioc(int dir, char type, int nr, int size) {
        return dir << 30 | size << 16 | type << 8 | nr;
    }

    @Test
    void numbersAreTheHeadersDefinitions() {
        assertEquals(ioc(IOC_READ, 'f', 1, 8), Ioctls.FS_IOC_GETFLAGS); // _IOR('f', 1, long)
        assertEquals(ioc(IOC_WRITE, 'f', 2, 8), Ioctls.FS_IOC_SETFLAGS); // _IOW('f', 2, long)
        assertEquals(ioc(IOC_READ, 'f', 1, 4), Ioctls.FS_IOC32_GETFLAGS); // _IOR('f', 1, int)
        assertEquals(ioc(IOC_WRITE, 'f', 2, 4), Ioctls.FS_IOC32_SETFLAGS); // _IOW('f', 2, int)
        assertEquals(ioc(IOC_WRITE, 'f', 7, 8), Ioctls.EXT4_IOC_GROUP_EXTEND); // _IOW('f', 7, unsigned long)
        assertEquals(ioc(IOC_WRITE, 'f', 8, 40), Ioctls.EXT4_IOC_GROUP_ADD); // _IOW('f', 8, struct ext4_new_group_input)
        assertEquals(ioc(IOC_NONE, 'f', 9, 0), Ioctls.EXT4_IOC_MIGRATE); // _IO('f', 9)
        assertEquals(ioc(IOC_WRITE, 'f', 16, 8), Ioctls.EXT4_IOC_RESIZE_FS); // _IOW('f', 16, __u64)
        assertEquals(ioc(IOC_READ, 'X', 31, 28), Ioctls.FS_IOC_FSGETXATTR); // _IOR('X', 31, struct fsxattr)
        assertEquals(ioc(IOC_WRITE, 'X', 32, 28), Ioctls.FS_IOC_FSSETXATTR); // _IOW('X', 32, struct fsxattr)
        assertEquals(Ioctls.FSXATTR_SIZE, Ioctls.FS_IOC_FSGETXATTR >>> 16 & 0x3FFF);
        assertEquals(Ioctls.NEW_GROUP_INPUT_SIZE, Ioctls.EXT4_IOC_GROUP_ADD >>> 16 & 0x3FFF);
    }

    @Test
    void eachNumberIsItsCommand() {
        assertEquals(Command.GET_FLAGS, Ioctls.command(Ioctls.FS_IOC_GETFLAGS));
        assertEquals(Command.GET_FLAGS, Ioctls.command(Ioctls.FS_IOC32_GETFLAGS));
        assertEquals(Command.SET_FLAGS, Ioctls.command(Ioctls.FS_IOC_SETFLAGS));
        assertEquals(Command.SET_FLAGS, Ioctls.command(Ioctls.FS_IOC32_SETFLAGS));
        assertEquals(Command.FS_GET_XATTR, Ioctls.command(Ioctls.FS_IOC_FSGETXATTR));
        assertEquals(Command.FS_SET_XATTR, Ioctls.command(Ioctls.FS_IOC_FSSETXATTR));
        assertEquals(Command.MIGRATE, Ioctls.command(Ioctls.EXT4_IOC_MIGRATE));
        assertEquals(Command.RESIZE, Ioctls.command(Ioctls.EXT4_IOC_RESIZE_FS));
        assertEquals(Command.RESIZE, Ioctls.command(Ioctls.EXT4_IOC_GROUP_EXTEND));
        assertEquals(Command.GROUP_ADD, Ioctls.command(Ioctls.EXT4_IOC_GROUP_ADD));
    }

    @Test
    void otherNumbersAreUnknown() {
        assertEquals(Command.UNKNOWN, Ioctls.command(0));
        assertEquals(Command.UNKNOWN, Ioctls.command(ioc(IOC_READ, 'v', 1, 8))); // FS_IOC_GETVERSION
        assertEquals(Command.UNKNOWN, Ioctls.command(ioc(IOC_READ, 'f', 2, 8))); // SETFLAGS's number read the other way
        assertEquals(Command.UNKNOWN, Ioctls.command(ioc(IOC_WRITE, 'f', 8, 32))); // GROUP_ADD of a 32-bit process
        assertEquals(Command.UNKNOWN, Ioctls.command(0x5401)); // TCGETS
    }

    /** FS_XFLAG_* (include/uapi/linux/fs.h) against FS_*_FL, the ext4 inode flag bits. */
    @ParameterizedTest(name = "xflag {0} is inode flag {1}")
    @CsvSource({
            "0x8,    0x10",       // IMMUTABLE
            "0x10,   0x20",       // APPEND
            "0x20,   0x8",        // SYNC
            "0x40,   0x80",       // NOATIME
            "0x80,   0x40",       // NODUMP
            "0x200,  0x20000000", // PROJINHERIT
            "0x8000, 0x2000000",  // DAX
    })
    void xflagsTableBothWays(String xflag, String flag) {
        int x = Integer.decode(xflag);
        int f = Integer.decode(flag);
        int extents = 0x80000;
        assertEquals(x, Ioctls.toXflags(f));
        assertEquals(x, Ioctls.toXflags(f | extents), "a flag without an xflag is left out");
        assertEquals(f | extents, Ioctls.fromXflags(x, extents), "set, and the rest kept");
        assertEquals(extents, Ioctls.fromXflags(0, f | extents), "cleared when its xflag is not given");
        assertEquals(f, Ioctls.fromXflags(x | 0x1 /* FS_XFLAG_REALTIME */, 0), "an xflag without a flag is ignored");
    }

    @Test
    void allFlagsAtOnceRoundTrip() {
        int all = 0x10 | 0x20 | 0x8 | 0x80 | 0x40 | 0x20000000 | 0x2000000;
        assertEquals(0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x200 | 0x8000, Ioctls.toXflags(all));
        assertEquals(all, Ioctls.fromXflags(Ioctls.toXflags(all), 0));
        assertEquals(0, Ioctls.toXflags(~all));
    }

    @Test
    void fsxattrReplyIsXflagsThenZeros() {
        byte[] b = Ioctls.fsxattr(0x10 | 0x40 | 0x80000);
        assertEquals(28, b.length);
        ByteBuffer expected = ByteBuffer.allocate(28).order(ByteOrder.nativeOrder()).putInt(0, 0x8 | 0x80);
        assertArrayEquals(expected.array(), b);
        assertEquals(0x8 | 0x80, Ioctls.xflags(ByteBuffer.wrap(b)));
    }

    @Test
    void xflagsReadsTheFirstFieldInNativeOrder() {
        ByteBuffer in = ByteBuffer.allocate(28).order(ByteOrder.nativeOrder());
        in.putInt(0, 0x8010).putInt(4, -1).putInt(12, 77);
        assertEquals(0x8010, Ioctls.xflags(in.order(ByteOrder.nativeOrder() == ByteOrder.BIG_ENDIAN ? ByteOrder.LITTLE_ENDIAN : ByteOrder.BIG_ENDIAN)));
    }

    @Test
    void newGroupInputFromAHandMadeStruct() {
        ByteBuffer b = ByteBuffer.allocate(40).order(ByteOrder.nativeOrder());
        b.putInt(0, 0xFFFFFFF0); // group: unsigned
        b.putInt(4, 0xDEADBEEF); // padding: ignored
        b.putLong(8, 0x1_0000_0001L); // block_bitmap: all 64 bits
        b.putLong(16, 4097);
        b.putLong(24, 8193);
        b.putInt(32, 0x80000001); // blocks_count: unsigned
        b.putShort(36, (short) 0xFFFF); // reserved_blocks: unsigned
        b.putShort(38, (short) 0x1234); // unused
        assertEquals(new OnlineResize.NewGroup(0xFFFFFFF0L, 0x1_0000_0001L, 4097, 8193, 0x80000001L, 0xFFFF), Ioctls.newGroupInput(b));
        assertEquals(0, b.position(), "the buffer is left as it was");
    }
}
