using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

public sealed class StopStringMatcherTests
{
    [Fact]
    public void PartialStop_IsHeldBack_ThenReleasedWhenItIsNotAStop()
    {
        StopStringMatcher matcher = new(["Help"]);

        Assert.Equal(new StopScan("", false), matcher.Push("Hel"));
        Assert.Equal(new StopScan("Hello", false), matcher.Push("lo"));
        Assert.Equal("", matcher.Flush());
    }

    [Fact]
    public void StopSpanningPushes_EmitsOnlyTheTextBeforeIt()
    {
        StopStringMatcher matcher = new(["</end>"]);

        Assert.Equal(new StopScan("answer", false), matcher.Push("answer"));
        Assert.Equal(new StopScan(" 42", false), matcher.Push(" 42</"));
        Assert.Equal(new StopScan("", false), matcher.Push("en"));
        Assert.Equal(new StopScan("", true), matcher.Push("d> trailing"));
    }

    [Fact]
    public void StopInsideOnePush_CutsThatPush()
    {
        StopStringMatcher matcher = new(["STOP"]);

        Assert.Equal(new StopScan("one two ", true), matcher.Push("one two STOP three"));
    }

    [Fact]
    public void MultipleStops_EarliestMatchWins()
    {
        StopStringMatcher matcher = new(["world", "lo w", "o"]);

        Assert.Equal(new StopScan("hel", true), matcher.Push("hello world"));

        StopStringMatcher spanning = new(["cd", "bcx"]);
        Assert.Equal(new StopScan("a", false), spanning.Push("abc"));
        Assert.Equal(new StopScan("b", true), spanning.Push("d"));
    }

    [Fact]
    public void StopAtTheVeryStart_EmitsNothing()
    {
        StopStringMatcher matcher = new(["\n\n"]);

        Assert.Equal(new StopScan("", true), matcher.Push("\n\nrest"));
    }

    [Fact]
    public void HeldText_IsOnlyTheLongestPossibleStopStart()
    {
        StopStringMatcher matcher = new(["abc", "xyz"]);

        Assert.Equal(new StopScan("xx", false), matcher.Push("xxa"));
        Assert.Equal(new StopScan("", false), matcher.Push("b"));
        Assert.Equal(new StopScan("ab", false), matcher.Push("ab"));
        Assert.Equal(new StopScan("abx", false), matcher.Push("xa"));
        Assert.Equal("a", matcher.Flush());
    }

    [Fact]
    public void Flush_ReturnsHeldText()
    {
        StopStringMatcher matcher = new(["<eos>"]);

        Assert.Equal(new StopScan("done ", false), matcher.Push("done <eo"));
        Assert.Equal("<eo", matcher.Flush());
    }

    [Fact]
    public void EmptyStopList_PassesEverything()
    {
        StopStringMatcher matcher = new([]);

        Assert.Equal(new StopScan("any text", false), matcher.Push("any text"));
        Assert.Equal(new StopScan("", false), matcher.Push(""));
        Assert.Equal("", matcher.Flush());

        StopStringMatcher onlyEmpty = new([""]);
        Assert.Equal(new StopScan("abc", false), onlyEmpty.Push("abc"));
    }

    [Fact]
    public void CallsAfterAStop_Throw()
    {
        StopStringMatcher matcher = new(["x"]);
        Assert.True(matcher.Push("x").Stopped);

        Assert.Throws<InvalidOperationException>(() => matcher.Push("more"));
        Assert.Throws<InvalidOperationException>(() => matcher.Flush());
    }

    [Fact]
    public void StreamedPieces_ConcatenateToTheTextBeforeTheFirstStop()
    {
        const string text = "The answer is 42.\nUser: next question\nUser: again";
        string[] stops = ["\nUser:", "###"];
        string expected = text[..text.IndexOf("\nUser:", StringComparison.Ordinal)];

        for (int pieceLength = 1; pieceLength <= 7; pieceLength++)
        {
            StopStringMatcher matcher = new(stops);
            string emitted = "";
            bool stopped = false;
            for (int at = 0; at < text.Length && !stopped; at += pieceLength)
            {
                StopScan scan = matcher.Push(text.Substring(at, Math.Min(pieceLength, text.Length - at)));
                Assert.DoesNotContain("\nUser", scan.Emit);
                emitted += scan.Emit;
                stopped = scan.Stopped;
            }

            Assert.True(stopped);
            Assert.Equal(expected, emitted);
        }
    }
}
