package dev.ext4j.dir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.testutil.Expect;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** The one name check: the errnos of ext4_lookup() / ext4_add_entry() and of a Java caller's bad names. */
class NamesTest {

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void lengthLimitIs255Bytes() throws Exception {
        Names.check(b("a".repeat(255)));
        Expect.errno(Errno.ENAMETOOLONG, () -> Names.check(b("a".repeat(256))));
        // bytes, not characters: 128 two-byte characters are 256 bytes
        Expect.errno(Errno.ENAMETOOLONG, () -> Names.check(b("\u00e9".repeat(128))));
        Names.check(b("\u00e9".repeat(127)));
    }

    @Test
    void emptySlashAndNulAreInvalid() {
        Expect.errno(Errno.EINVAL, () -> Names.check(new byte[0]));
        Expect.errno(Errno.EINVAL, () -> Names.check(b("a/b")));
        Expect.errno(Errno.EINVAL, () -> Names.check(b("/")));
        Expect.errno(Errno.EINVAL, () -> Names.check(new byte[] {'a', 0, 'b'}));
        // too long wins over a bad byte, as the length is checked first
        Expect.errno(Errno.ENAMETOOLONG, () -> Names.check(b("/".repeat(256))));
    }

    @Test
    void dotsPassTheCheckAndAreRecognised() throws Exception {
        Names.check(b("."));
        Names.check(b(".."));
        assertTrue(Names.isDotOrDotDot(b(".")));
        assertTrue(Names.isDotOrDotDot(b("..")));
        assertFalse(Names.isDotOrDotDot(b("...")));
        assertFalse(Names.isDotOrDotDot(b(".a")));
        assertFalse(Names.isDotOrDotDot(new byte[0]));
    }

    @Test
    void messagesShowUnprintableBytesEscaped() {
        assertEquals("a\\x00b\\x5c\\xc3\\xa9", Names.printable(new byte[] {'a', 0, 'b', '\\', (byte) 0xc3, (byte) 0xa9}));
    }
}
